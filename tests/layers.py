"""The import layers of ``ledger/__init__.py``, read from its docstring and checked on source.

The docstring's layer table is the one statement of the layers: :func:`layers` parses it,
:func:`violations` reports every import that goes up a layer or sideways into a sibling, and
every module that belongs to no layer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import ledger

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("ledger", "consumers", "projections", "schemas")
_TABLE = re.compile(r"^Layers,.*?\n\n(?P<table>(?:    \S.*\n)+)", re.M | re.S)


def layers(doc: str | None = ledger.__doc__) -> list[frozenset[str]]:
    """The layers from the top down, each a set of packages."""
    found = _TABLE.search(doc or "")
    if found is None:
        raise AssertionError("ledger/__init__.py's docstring has no layer table")
    return [
        frozenset(p.strip() for p in line.split("|"))
        for line in found.group("table").splitlines()
        if line.strip()
    ]


def sources(root: Path = ROOT) -> dict[str, str]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for top in TOP_LEVEL:
        for path in (root / top).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path.read_text()
    return found


def _package(module: str, packages: set[str]) -> str | None:
    """The longest listed package that ``module`` is or lies in."""
    best = None
    for package in packages:
        if (module == package or module.startswith(package + ".")) and (
            best is None or len(package) > len(best)
        ):
            best = package
    return best


def imports(module: str, source: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The project modules ``module`` imports, wherever in it the import statement is."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, *([base] if base else [])])
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        yield from (n for n in names if n.split(".")[0] in TOP_LEVEL)


def _edges(
    modules: Mapping[str, str], packages: set[str], packages_of_modules: frozenset[str]
) -> Iterator[tuple[str, str | None, str, str | None]]:
    """(module, its package, imported module, that module's package) for every import."""
    known = set(modules)
    for module, source in sorted(modules.items()):
        if module == "ledger":  # the map itself
            continue
        own = _package(module, packages)
        if own is None:
            yield module, None, "", None
            continue
        is_package = module in packages_of_modules
        for target in sorted(set(imports(module, source, is_package, known))):
            yield module, own, target, _package(target, packages)


def dependencies(
    modules: Mapping[str, str], table: list[frozenset[str]], packages_of_modules: frozenset[str]
) -> dict[str, set[str]]:
    """The other listed packages each listed package imports."""
    found: dict[str, set[str]] = {p: set() for layer in table for p in layer}
    for _, own, _, theirs in _edges(modules, set(found), packages_of_modules):
        if own is not None and theirs is not None and theirs != own:
            found[own].add(theirs)
    return found


def violations(
    modules: Mapping[str, str],
    table: list[frozenset[str]],
    packages_of_modules: frozenset[str] = frozenset(),
) -> list[str]:
    """Every import up a layer or into a sibling package, and every module in no layer."""
    rank = {package: i for i, layer in enumerate(table) for package in layer}
    found = []
    for module, own, target, theirs in _edges(modules, set(rank), packages_of_modules):
        if own is None:
            found.append(f"{module} is in no layer of ledger/__init__.py")
        elif theirs is None or theirs == own:
            continue
        elif rank[theirs] < rank[own]:
            found.append(f"{module} imports {target}: {theirs} is a layer above {own}")
        elif rank[theirs] == rank[own]:
            found.append(f"{module} imports {target}: {theirs} and {own} share a layer")
    return found
