"""What the CPU can do, for the choice of training precision (`train.precision: auto`).

Measured side by side (PLATFORM-NOTES): `vgg` 48x48 at batch 128 trains at 277 img/s in
mixed_bfloat16 against 124 in float32 on an Intel CPU with AMX, but at 7 against 50 on an
AMD EPYC with AVX2 only, where bfloat16 is emulated. So bfloat16 is chosen only where the CPU
says it computes it natively.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

#: /proc/cpuinfo flags of native bfloat16 arithmetic (AVX512-BF16, AMX tiles in bfloat16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (named beside every figure a run or a benchmark reports)."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, cpuinfo: str | None = None) -> str:
    """`auto` -> mixed_bfloat16 with native bfloat16, float32 otherwise; others unchanged."""
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if native_bfloat16(cpuinfo) else "float32"
