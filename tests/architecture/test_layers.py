"""The house rules that keep the layers apart, checked on the source itself (AST walks)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from geoharmony.methods import METHODS

SRC = Path(__file__).resolve().parents[2] / "src" / "geoharmony"
ENGINE = sorted((SRC / "engine").glob("*.py"))
BUILTIN_METHODS = tuple(METHODS)


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def gh_attributes(path: Path) -> list[int]:
    """Lines where ``path`` reads an attribute named ``gh`` (``cfg.gh``, ``method.gh``)."""
    tree = ast.parse(path.read_text(), str(path))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "gh"]


def test_the_engine_files_are_found() -> None:
    assert {p.name for p in ENGINE} >= {"trainer.py", "evaluate.py", "schedules.py", "resume.py"}


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: p.name)
def test_the_engine_imports_nothing_of_gh(path: Path) -> None:
    offending = [m for m in imported_modules(path) if m.startswith("geoharmony.gh")]
    assert not offending, f"{path.name} imports GH internals: {offending}"


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: p.name)
def test_the_engine_names_no_gh_attribute(path: Path) -> None:
    assert not gh_attributes(path), f"{path.name} reads .gh at lines {gh_attributes(path)}"


@pytest.mark.parametrize("path", ENGINE, ids=lambda p: p.name)
def test_the_engine_imports_no_particular_method(path: Path) -> None:
    particular = {f"geoharmony.methods.{name}" for name in BUILTIN_METHODS}
    offending = [m for m in imported_modules(path) if m in particular]
    assert not offending, f"{path.name} imports a method's own module: {offending}"


def test_the_walk_would_see_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from geoharmony.gh.priors import BankPrior\nx = cfg.gh.warmup_epochs\n")
    assert "geoharmony.gh.priors" in imported_modules(bad)
    assert gh_attributes(bad) == [2]


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """``module -> modules of the package it imports``, every import counted (inside functions
    and ``TYPE_CHECKING`` blocks too: a cycle there is still a knot in the design). ``from a.b
    import c`` is an edge to ``a.b.c`` where that is a module, else to ``a.b``; importing
    ``a.b.c`` also runs the packages ``a.b`` and ``a`` (their ``__init__``), so those are edges
    too, except to the importer's own packages (already running when it is imported)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        found = {t for t in targets if t in modules}
        for target in list(found):
            parts = target.split(".")
            for depth in range(1, len(parts)):
                package = ".".join(parts[:depth])
                if package in modules and not (name + ".").startswith(package + "."):
                    found.add(package)
        graph[name] = found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == [], "modules that import each other, directly or not"


def test_the_cycle_check_sees_a_planted_cycle(tmp_path: Path) -> None:
    package = tmp_path / "geoharmony"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    from geoharmony.b import g\n")
    (package / "b.py").write_text("from geoharmony import a\n")
    (package / "c.py").write_text("import geoharmony.a\n")
    assert cycles(import_graph(package)) == [["geoharmony.a", "geoharmony.b"]]
    # Through a package's __init__: d imports sub.e, which runs sub/__init__, which imports d.
    (package / "d.py").write_text("from geoharmony.sub.e import x\n")
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_text("from geoharmony import d\n")
    (package / "sub" / "e.py").write_text("x = 1\n")
    assert ["geoharmony.d", "geoharmony.sub"] in cycles(import_graph(package))


def test_gh_loads_neither_the_evaluation_code_nor_scipy() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, geoharmony.gh; "
        "print(sorted(m for m in sys.modules if m.startswith(('geoharmony.eval', 'scipy'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
