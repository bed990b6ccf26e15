"""The package layout holds: imports only go down the layers, no module imports itself back, modules stay small.

The layers are the `[tool.importlinter]` contracts in pyproject.toml (README.md, "Package layout"); this runs
them, then looks for import cycles between any two modules (a contract only sees imports across its layers).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="import-linter is part of the dev extra")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sppo_hub"
MAX_LINES = 400


@pytest.fixture(scope="module")
def graph():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph("sppo_hub", cache_dir=None)


def test_the_layer_contracts_hold():
    from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

    # lint-imports finds sppo_hub on sys.path (this checkout first) and prints its report
    old_cwd = Path.cwd()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    try:
        status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    finally:
        os.chdir(old_cwd)
        sys.path.remove(str(ROOT))
    assert status == EXIT_STATUS_SUCCESS, "an import goes up a layer: see the report above and README.md ('Package layout')"


def import_cycles(graph) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), each a set of modules that import one another."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges[v]:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules)))
    for m in modules:
        if m not in index:
            visit(m)
    return groups


def test_no_import_cycles(graph):
    # A package's __init__ importing its own submodules is not a cycle unless a submodule imports the package
    # back (then it is, and it is reported like any other).
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (each group imports itself back):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_module_is_under_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    too_long = {path: n for path, n in sizes.items() if n >= MAX_LINES}
    assert not too_long, f"modules of {MAX_LINES} lines or more (split them by concern): {too_long}"
