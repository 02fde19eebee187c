"""The shape of the code: no import cycles (function-level imports included), no module over
450 lines, no private names imported across modules, and nothing on the production path
importing the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cheetah_assets"
MAX_LINES = 450
#: modules allowed to import the simulator: the demo and dev commands' helpers, and the simulator itself
SIMULATOR_USERS = {"cheetah_assets.embedded", "cheetah_assets.demo", "cheetah_assets.dev"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level:
        base = base[: len(base) - (level - 1)] if level > 1 else base
        return ".".join(base + ([target] if target else []))
    return target or ""


def imports_of(name: str) -> list[tuple[str, str]]:
    """(imported module, imported name or '') for every import in ``name``, at any depth."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(name, is_package, node.level, node.module)
            out += [(mod, a.name) for a in node.names]
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for mod, attr in imports_of(m):
            if f"{mod}.{attr}" in MODULES:
                edges[m].add(f"{mod}.{attr}")
            # importing a submodule runs every package __init__ on the way
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in MODULES and prefix != m:
                    edges[m].add(prefix)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-loop), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_function_level_imports_included():
    assert cycles(graph()) == []


def test_no_module_over_450_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_private_name_is_imported_from_another_module():
    reach_ins = [
        f"{m} imports {mod}.{attr}"
        for m in MODULES
        for mod, attr in imports_of(m)
        if mod.startswith("cheetah_assets") and attr.startswith("_") and not attr.startswith("__")
    ]
    assert reach_ins == []


def test_nothing_on_the_production_path_imports_the_simulator():
    users = {
        m for m in MODULES
        if not m.startswith("cheetah_assets.simulator")
        and any(mod.startswith("cheetah_assets.simulator") or f"{mod}.{a}".startswith("cheetah_assets.simulator")
                for mod, a in imports_of(m))
    }
    assert users <= SIMULATOR_USERS, users - SIMULATOR_USERS
