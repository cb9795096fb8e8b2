"""Load a script of bench/ as a module, for tests of its functions (bench/ is no package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).parents[1] / "bench"


def load_bench(script: str) -> ModuleType:
    """bench/<script>.py, imported as `bench_<script>` (registered in sys.modules, so its
    dataclasses and pickling work)."""
    spec = importlib.util.spec_from_file_location(f"bench_{script}", BENCH_DIR / f"{script}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
