"""The data layer's import graph (AST walk, imports inside functions and TYPE_CHECKING blocks
included): no cycle between its modules, and nothing reaching up into the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "src" / "geoharmony" / "data"
MODULES = sorted(p.stem for p in DATA.glob("*.py") if p.stem != "__init__")
ABOVE = ("eval", "engine", "methods", "gh", "downstream", "models", "cli")


def imports_of(path: Path) -> set[str]:
    """Every ``geoharmony.*`` module that ``path`` imports, anywhere in the file
    (``from geoharmony.data import x`` also counts as ``geoharmony.data.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("geoharmony")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("geoharmony"):
            assert node.module is not None
            found.add(node.module)
            if node.module == "geoharmony.data":
                found |= {f"geoharmony.data.{a.name}" for a in node.names}
    return found


def data_edges(folder: Path, modules: list[str]) -> dict[str, set[str]]:
    """``{module: the modules of the same folder it imports}`` for ``geoharmony.data``."""
    edges = {}
    for m in modules:
        names = {d.removeprefix("geoharmony.data.") for d in imports_of(folder / f"{m}.py")}
        edges[m] = names & set(modules)
    return edges


def cyclic(edges: dict[str, set[str]]) -> list[str]:
    """The modules that reach themselves through their imports."""

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += edges[m]
        return seen

    return [m for m in edges if m in reachable(m)]


def test_the_data_modules_import_no_cycle() -> None:
    edges = data_edges(DATA, MODULES)
    assert not cyclic(edges), f"import cycles through {cyclic(edges)}: {edges}"


def test_the_data_modules_reach_no_layer_above() -> None:
    for module in MODULES:
        above = [d for d in imports_of(DATA / f"{module}.py") if d.split(".")[1] in ABOVE]
        assert not above, f"data/{module}.py imports {above}"


def test_the_walk_sees_hidden_imports(tmp_path: Path) -> None:
    # An import inside a function and one only for type checking both count.
    (tmp_path / "a.py").write_text("def f():\n    from geoharmony.data import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from geoharmony.data.a import X\n"
    )
    (tmp_path / "c.py").write_text("from geoharmony.eval.results import write_json\n")
    edges = data_edges(tmp_path, ["a", "b", "c"])
    assert edges == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert cyclic(edges) == ["a", "b"]
    assert "geoharmony.eval.results" in imports_of(tmp_path / "c.py")
