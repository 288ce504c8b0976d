"""The tree keeps its layers: a lower layer never imports a higher one, nor a sibling.

The layer table is the docstring of ``ledger/__init__.py``; ``tests/layers.py`` reads it and
walks every import statement of the project's packages, wherever in a module it is.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from tests.layers import ROOT, dependencies, layers, sources, violations

PACKAGES = frozenset(n for n in sources() if (ROOT / n.replace(".", "/") / "__init__.py").exists())
_MAY_IMPORT = re.compile(r"May\s+import\s+(?P<what>.*?)\.(?:\s|$)", re.S)
_NAME = re.compile(r"\b(ledger\.\w+|consumers|projections|schemas)\b")


def check(modules: dict[str, str]) -> list[str]:
    return violations(modules, layers(), PACKAGES)


def test_the_tree_keeps_its_layers() -> None:
    assert check(sources()) == []


def test_the_table_names_existing_packages_once() -> None:
    named = [package for layer in layers() for package in layer]
    assert len(named) == len(set(named))
    assert set(named) <= set(sources())


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        (
            "ledger.storage.store",
            "from ledger.application.service import Ledger",
            "ledger.storage.store imports ledger.application.service: "
            "ledger.application is a layer above ledger.storage",
        ),
        (
            "ledger.kafka.admin",
            "from ledger.storage import store",
            "ledger.kafka.admin imports ledger.storage.store: "
            "ledger.storage and ledger.kafka share a layer",
        ),
        (
            "ledger.keys.crypto",
            "def late():\n    from ..process import settings",
            "ledger.keys.crypto imports ledger.process.settings: "
            "ledger.process is a layer above ledger.keys",
        ),
        (
            "ledger.domain",
            "import projections.queries",
            "ledger.domain imports projections.queries: projections is a layer above ledger.domain",
        ),
    ],
    ids=["up-a-layer", "into-a-sibling", "relative-inside-a-function", "absolute-from-a-package"],
)
def test_a_wrong_import_fails(module: str, line: str, expected: str) -> None:
    tree = sources()
    tree[module] += f"\n{line}\n"
    assert check(tree) == [expected]


def test_a_module_outside_every_layer_fails() -> None:
    tree = sources()
    tree["ledger.loose"] = "import json\n"
    assert check(tree) == ["ledger.loose is in no layer of ledger/__init__.py"]


@pytest.mark.parametrize("package", sorted(p for layer in layers() for p in layer))
def test_each_package_says_what_it_owns_and_may_import(package: str) -> None:
    if package not in PACKAGES:  # a module in the table: the producer client
        return
    doc = ast.get_docstring(ast.parse(sources()[package]))
    assert doc, f"{package} has no docstring"
    found = _MAY_IMPORT.search(doc)
    assert found, f"{package}'s docstring does not say what it may import"
    table = layers()
    rank = {p: i for i, layer in enumerate(table) for p in layer}
    allowed = set(_NAME.findall(found.group("what")))
    assert all(rank[p] > rank[package] for p in allowed), f"{package} names a higher layer"
    if "every layer below" not in found.group("what"):
        imported = dependencies(sources(), table, PACKAGES)[package]
        assert imported <= allowed, f"{package} imports {sorted(imported - allowed)}, unstated"


def test_the_deprecated_apache_kafka_entry_point_still_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ledger.kafka.apache", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m ledger.servers.apache" in done.stdout
    assert "DeprecationWarning: python -m ledger.kafka.apache is deprecated" in done.stderr


def test_the_architecture_guide_shows_the_same_layers() -> None:
    guide = (ROOT / "docs" / "architecture.md").read_text()
    section = guide.split("## The code, by layer", 1)[1].split("```", 2)[1]
    shown = [frozenset(p.strip() for p in line.split("|")) for line in section.split("\n")]
    assert [layer for layer in shown if layer != frozenset({""})] == layers()
