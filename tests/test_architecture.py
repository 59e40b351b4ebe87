"""The house rules of docs/architecture.md, checked on the source: the import graph of `server` and `ml_backend`
(every import statement, including those inside functions) has no cycle, `ml_backend` never imports `server`,
only the HTTP modules of `ml_backend` import Flask, private names stay inside their module, no module grows past
the size limit."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "ml_backend")
# the only ml_backend modules that may import Flask (or werkzeug): the app factory, the Blueprint, the error mapping
HTTP_MODULES = {"ml_backend", "ml_backend.routes", "ml_backend.http_errors"}
MAX_LINES = 650  # "around 600": a module past this splits


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _sources()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            out.append((target, [a.name for a in node.names], node.lineno))
    return out


def _internal_targets(target: str, names: list[str]) -> list[str]:
    """Our modules an import statement reaches: `from pkg import sub` reaches pkg.sub when that is a module."""
    hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    if len(hits) < len(names) or not names:
        # the names that are not submodules come from `target` itself (or the nearest module above it)
        mod = target
        while mod and mod not in MODULES:
            mod = mod.rpartition(".")[0]
        if mod:
            hits.append(mod)
    return hits


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names, _ in imports_of(mod, path):
            if target.split(".")[0] in PACKAGES:
                graph[mod].update(t for t in _internal_targets(target, names) if t != mod)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_walker_sees_function_level_imports_and_cycles(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from .other import thing\n    import ml_backend.schema\n")
    found = {t for t, _, _ in imports_of("server.m", src)}
    assert found == {"os", "server.other", "ml_backend.schema"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert find_cycles(import_graph()) == []


def test_ml_backend_never_imports_server():
    bad = [
        f"{mod} line {line}: imports {target}"
        for mod, path in MODULES.items() if mod.split(".")[0] == "ml_backend"
        for target, _, line in imports_of(mod, path) if target.split(".")[0] == "server"
    ]
    assert bad == []


def test_only_http_modules_import_flask():
    bad = [
        f"{mod} line {line}: imports {target}"
        for mod, path in MODULES.items() if mod.split(".")[0] == "ml_backend" and mod not in HTTP_MODULES
        for target, _, line in imports_of(mod, path) if target.split(".")[0] in ("flask", "werkzeug")
    ]
    assert bad == []


def test_model_core_loads_without_flask():
    core = [m for m in MODULES if m.split(".")[0] == "ml_backend" and m not in HTTP_MODULES]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in core)
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_private_names_stay_in_their_module():
    bad = [
        f"{mod} line {line}: imports {name} from {target}"
        for mod, path in MODULES.items()
        for target, names, line in imports_of(mod, path) if target.split(".")[0] in PACKAGES
        for name in names if name.startswith("_") and not name.startswith("__")
    ]
    assert bad == []


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_size(mod):
    lines = len(MODULES[mod].read_text().splitlines())
    assert lines <= MAX_LINES, f"{mod} has {lines} lines: split it (one concept per module)"
