"""`train.precision: auto` follows the CPU's flags: bfloat16 only where it is native."""

from __future__ import annotations

import pytest

from emotionops.training.hardware import cpu_model, native_bfloat16, resolve_precision

AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC = (
    "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu sse avx2 fma\n"
)


@pytest.mark.parametrize(
    ("cpuinfo", "native", "model"),
    [(AMX, True, "Intel(R) Xeon(R) Processor"), (EPYC, False, "AMD EPYC 7B13 64-Core Processor")],
)
def test_auto_picks_bfloat16_only_with_native_support(
    cpuinfo: str, native: bool, model: str
) -> None:
    assert native_bfloat16(cpuinfo) is native
    assert resolve_precision("auto", cpuinfo) == ("mixed_bfloat16" if native else "float32")
    assert cpu_model(cpuinfo) == model


def test_an_explicit_precision_is_kept_whatever_the_cpu() -> None:
    assert resolve_precision("mixed_bfloat16", EPYC) == "mixed_bfloat16"
    assert resolve_precision("float32", AMX) == "float32"


def test_this_machine_is_described() -> None:
    assert cpu_model() and resolve_precision("auto") in ("float32", "mixed_bfloat16")
