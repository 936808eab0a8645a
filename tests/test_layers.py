"""The packages keep their layers: every import of `dosing` points down, and the pure layers
(core, protocol, engine) never import a terminal, a command line, a database or a plot.

The graph is read from the source (every `import` and `from ... import`, at any depth, also
those only for type checking), so a lazy import inside a function counts as much as one at the
top of a module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "dosing"
LAYERS = [
    ("core",),
    ("protocol",),
    ("engine",),
    ("render", "fhir"),
    ("replay", "verify"),
    ("clinic",),
    ("service",),
    ("cli",),
]
"""Bottom to top. A package imports its own modules and the packages of lower layers; packages
in one layer do not import each other."""
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}
PURE = ("core", "protocol", "engine")
FORBIDDEN_IN_PURE = ("rich", "typer", "sqlite3", "matplotlib", "starlette", "uvicorn", "httpx")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file; `from dosing.pkg import m` as
    dosing.pkg.m."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("dosing") and node.module.count(".") <= 1:
                found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, node.module))
    return found


def violations(root: Path) -> list[str]:
    """Each upward or sideways import, and each forbidden library in a pure layer."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            continue  # dosing/__init__.py and __main__.py stand above the layers
        package = relative.parts[0]
        for line, module in imported_modules(path):
            where = f"{relative}:{line}"
            parts = module.split(".")
            if parts[0] == "dosing" and len(parts) > 1:
                target = parts[1]
                if target == package:
                    continue
                if target not in RANK:
                    problems.append(f"{where}: imports {module}, which is in no layer")
                elif RANK[target] >= RANK[package]:
                    direction = "up" if RANK[target] > RANK[package] else "sideways"
                    problems.append(f"{where}: {package} imports {module} ({direction})")
            elif package in PURE and parts[0] in FORBIDDEN_IN_PURE:
                problems.append(f"{where}: {package} is pure but imports {module}")
    return problems


def test_every_package_is_in_a_layer() -> None:
    """Each folder under src/dosing is a package named in the layers, and the other way round."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    folders.discard("protocols")  # the shipped protocol files, when installed
    assert folders == set(RANK)


def test_imports_point_down() -> None:
    """No import points up or sideways, and the pure layers import no rich, typer, sqlite3,
    matplotlib or web stack."""
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("package", "line", "expected"),
    [
        (
            "engine",
            "from dosing.clinic.store import Store", "engine imports dosing.clinic.store (up)",
        ),
        (
            "replay",
            "from dosing.verify import check", "replay imports dosing.verify.check (sideways)",
        ),
        ("protocol", "import rich.console", "protocol is pure but imports rich.console"),
        ("core", "import sqlite3", "core is pure but imports sqlite3"),
    ],
)  # fmt: skip
def test_an_upward_import_fails(tmp_path: Path, package: str, line: str, expected: str) -> None:
    """A module that imports up, sideways or a forbidden library is reported by file and line."""
    folder = tmp_path / package
    folder.mkdir()
    (folder / "bad.py").write_text(f'"""A module that breaks the layers."""\n\n{line}\n')
    assert violations(tmp_path) == [f"{package}/bad.py:3: {expected}"]


def test_the_readme_draws_every_package() -> None:
    """The README's architecture names every package folder, in the order of the layers."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    drawn = re.findall(r"^  (\w+)/(?: \| (\w+)/)?", section, flags=re.M)
    names = [name for pair in drawn for name in pair if name]
    expected = [package for layer in reversed(LAYERS) for package in layer]
    assert [n for n in names if n in RANK] == expected


def test_long_modules_and_classes_say_why() -> None:
    """A module over 500 lines or a class over 200 lines says in its docstring why it stays
    whole (a sentence naming its length); every other one was split along its seams."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        sized: list[tuple[str, int, ast.Module | ast.ClassDef]] = [
            (str(path.relative_to(PACKAGE)), len(path.read_text().splitlines()), tree)
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                sized.append((f"{path.relative_to(PACKAGE)}:{node.name}", length, node))
        for name, length, node in sized:
            limit = 500 if isinstance(node, ast.Module) else 200
            if length > limit and "lines" not in (ast.get_docstring(node) or ""):
                unexplained.append(f"{name}: {length} lines")
    assert unexplained == []
