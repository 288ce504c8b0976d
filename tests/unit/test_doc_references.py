"""The docs name files and modules that exist: every path they give, and every dotted name in
one of the project's packages, resolves in today's tree (a moved module leaves no stale name)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FOLDERS = "ledger|consumers|projections|schemas|tests|tools|scripts"
_PATH = re.compile(rf"(?<![\w./-])((?:{_FOLDERS})/[\w/.*-]*)")
_DOTTED = re.compile(r"(?<![\w./-])((?:ledger|consumers|projections)(?:\.[A-Za-z_]\w*)+)")
# Where the modules moved from when ledger/ was grouped by concern: no doc may use these.
FORMER = {
    "ledger.avro",
    "ledger.contract",
    "ledger.crypto",
    "ledger.crypto_ingest",
    "ledger.kek",
    "ledger.keystore",
    "ledger.ingest_keys",
    "ledger.ingest_keys_postgres",
    "ledger.rotation",
    "ledger.store",
    "ledger.store_memory",
    "ledger.store_postgres",
    "ledger.transcodings",
    "ledger.pg_session",
    "ledger.write_watch",
    "ledger.integrity.chain",
    "ledger.integrity.chain_postgres",
    "ledger.batch",
    "ledger.kafka_security",
    "ledger.settings",
    "ledger.runtime",
    "ledger.embedded",
    "ledger.kafka.apache_jars",
    "ledger.kafka.apache_node",
    "ledger.erasure_journal",
    "ledger.reconcile",
    "ledger.logs",
    "ledger.backoff",
    "ledger.secret_files",
    "ledger.children",
}


def _names(pattern: re.Pattern[str]) -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        text = doc.read_text()
        for found in pattern.finditer(text):
            if text[found.end() : found.end() + 1] == "<":  # a placeholder: schemas/v<N>/
                continue
            yield doc.relative_to(ROOT).as_posix(), found.group(1).rstrip(".")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_path_the_docs_give_exists() -> None:
    missing = [
        f"{doc}: {path}"
        for doc, path in _names(_PATH)
        if not any(ROOT.glob(path.split("::")[0].rstrip("/")))
    ]
    assert missing == []


def test_no_doc_names_a_module_where_it_used_to_be() -> None:
    stale = [
        f"{doc}: {name}"
        for doc, name in _names(_DOTTED)
        if any(name == old or name.startswith(old + ".") for old in FORMER)
    ]
    stale += [
        f"{doc}: {path}"
        for doc, path in _names(_PATH)
        if any(path.startswith(old.replace(".", "/") + ".py") for old in FORMER)
    ]
    assert stale == []


@pytest.mark.parametrize(
    "name",
    sorted(
        {
            name
            for _, name in _names(_DOTTED)
            if name.split(".")[1]
            in {p.stem for p in (ROOT / name.split(".")[0]).iterdir() if p.stem != "__init__"}
        }
    ),
)
def test_every_module_name_the_docs_give_resolves(name: str) -> None:
    assert _resolves(name), name


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_the_readme_stays_short_and_every_link_of_its_map_lands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 15_000, "the README is for the first ten minutes"
    missing = []
    for target, anchor in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#([\w-]+))?\)", readme):
        path = ROOT / target
        if not path.exists():
            missing.append(target)
            continue
        headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
        if anchor and anchor not in {_slug(h) for h in headings}:
            missing.append(f"{target}#{anchor}")
    assert missing == []
