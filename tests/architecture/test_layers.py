"""The house rules that keep the layers apart, checked on the source itself (AST walks)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "geoharmony"
ENGINE = sorted((SRC / "engine").glob("*.py"))
BUILTIN_METHODS = ("simclr", "focal", "sdclr", "bcl", "dnc")


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
