"""The package's layout: stage packages where a reader expects them, and no import cycles."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "emotionops"


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere (top level, functions, TYPE_CHECKING blocks):
    `from pkg import name` counts as `pkg.name` when that is a module, else as `pkg`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in modules:
                    found.add(child)
                elif node.module in modules:
                    found.add(node.module)
    return found


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), plus self-imports."""
    modules = module_names()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def test_no_import_cycle_among_the_package_modules() -> None:
    assert import_cycles() == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch) -> None:
    """The check itself can fail: two modules importing each other are reported."""
    pkg = tmp_path / "emotionops"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from emotionops import b\n")
    (pkg / "b.py").write_text("def f():\n    from emotionops.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert import_cycles() == [["emotionops.a", "emotionops.b"]]


def test_each_stage_lives_in_its_package() -> None:
    stages = {
        "acquire": ["scrape/driver.py", "urls.py", "guard.py", "download.py"],
        "clean": ["images.py", "quality.py", "faces.py"],
        "dataset": ["importers.py", "split.py", "dvc.py"],
        "validation": ["suites.py"],
        "warehouse": ["schema.py", "loaders.py"],
        "training": ["train.py", "evaluate.py", "export.py"],
        "edge": ["service.py", "camera.py"],
        "api": ["__init__.py"],
        "dashboard": ["models.py", "quality.py", "analytics.py", "pages.py", "bundle.py"],
    }
    missing = [
        f"{p}/{f}" for p, files in stages.items() for f in files if not (PACKAGE / p / f).is_file()
    ]
    assert missing == []
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == [
        "__init__.py", "cli.py", "demo.py", "errors.py", "files.py", "gate.py", "notice.py",
        "params.py", "paths.py",
        "pipeline.py", "progress.py", "registry.py", "settings.py", "tracking.py",
    ]  # fmt: skip
