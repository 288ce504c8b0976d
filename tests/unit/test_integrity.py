"""The chain and checkpoint formats, pinned to the values docs/audit.md states, and the
standalone verifier agreeing with the ledger's own on an in-memory ledger."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from ledger.application.service import Ledger
from ledger.integrity.checkpoints import (
    Checkpoint,
    CheckpointSigner,
    new_private_key,
    verify_signature,
)
from ledger.integrity.sources import export_line, item_from_line, store_items
from ledger.integrity.verify import Item, Page, verify
from ledger.keys.crypto import LocalKek, new_secret
from ledger.storage.chain import GENESIS, Link, Row, Stored, extend, link_hash, stored
from tests.builders import REF, collect, erase, grant
from tests.ledger_cases import BOB, ready

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_chain.py"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_chain", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_link_hash_is_the_value_the_audit_document_states() -> None:
    event = Stored(
        7,
        uuid.UUID("2e618f49-0da5-4e02-9cfa-302e5ea0f8f4"),
        2,
        "ledger.domain.subject:Subject.ConsentGranted",
        b'{"a":1}',
    )
    expected = "ebe66bd62ebff605a691d238b5462954f55143bff2950acba07a6345ba152632"
    assert link_hash(GENESIS, event, 5).hex() == expected
    assert expected in (TOOL.parents[1] / "docs" / "audit.md").read_text()


def test_a_checkpoint_verifies_only_under_its_key_and_unchanged() -> None:
    signer = CheckpointSigner(new_private_key())
    signed = signer.sign(12, bytes(range(32)), datetime(2026, 11, 23, 12, tzinfo=UTC))
    again = Checkpoint.from_json(json.loads(json.dumps(signed.to_json())))
    assert again == signed and signed.time == "2026-11-23T12:00:00.000000Z"
    assert verify_signature(signed, signer.public_key)
    other = CheckpointSigner(new_private_key()).public_key
    assert not verify_signature(signed, other)
    moved = Checkpoint(13, signed.head, signed.time_us, signed.key_id, signed.signature)
    assert not verify_signature(moved, signer.public_key)
    tool_says = tool().check_checkpoint(
        signed.to_json(), {12: signed.head}, [other, signer.public_key]
    )
    assert tool_says is None


def test_the_standalone_verifier_agrees_with_the_ledger_on_an_export() -> None:
    ledger = Ledger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        kek=LocalKek(new_secret(), "k"),
        lookup_key=new_secret(),
    )
    ready(ledger)
    ledger.record([grant(REF), collect(REF), grant(BOB)])
    ledger.record([erase(REF)])
    lines = [export_line(item) for item in store_items(ledger.store)]
    assert verify(item_from_line(line) for line in lines).ok

    events, problems, recomputed = tool().verify_export(lines)
    report = verify(store_items(ledger.store))
    assert (events, problems) == (report.events, [])
    assert recomputed[max(recomputed)] == report.recomputed_head

    row = json.loads(lines[3])
    row["originator_version"] += 1
    lines[3] = json.dumps(row)
    _, problems, _ = tool().verify_export(lines)
    ours = verify(item_from_line(line) for line in lines).first
    assert ours is not None
    assert [p[0] for p in problems] == [ours.position] == [row["sequence"]]


class _Paged:
    """A source read in pages of ``size`` positions, as ``StoreItems`` reads a store."""

    def __init__(self, rows: list[Row], links: list[Link], size: int) -> None:
        self.rows, self.links, self.size = rows, links, size

    def pages(self) -> list[Page]:
        positions = sorted({r[0] for r in self.rows} | {k.sequence for k in self.links})
        cuts = [positions[i : i + self.size] for i in range(0, len(positions), self.size)]
        return [
            Page(
                [r for r in self.rows if r[0] in cut],
                [k for k in self.links if k.sequence in cut],
            )
            for cut in cuts
        ]

    def items(self) -> list[Item]:
        return [item for page in self.pages() for item in page.items()]


def _tampered() -> dict[str, tuple[list[Row], list[Link]]]:
    """A small chain with gaps in its ids, and every kind of damage the verifier names."""
    a, b = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    rows: list[Row] = []
    versions = {a: 0, b: 0}
    for n, seq in enumerate([1, 2, 3, 5, 6, 7, 9, 10, 11, 12]):
        who = a if n % 3 else b
        versions[who] += 1
        rows.append((seq, who, versions[who], "t:Subject.Event", f'{{"n":{n}}}'.encode()))
    links = extend(None, [stored(*r) for r in rows])

    def changed(rows: list[Row], at: int) -> list[Row]:
        return [r if r[0] != at else (*r[:4], b"{}") for r in rows]

    swapped_versions = [
        (r[0], r[1], {1: 2, 2: 1}.get(r[2], r[2]) if r[1] == a else r[2], r[3], r[4]) for r in rows
    ]
    return {
        "intact": (rows, links),
        "changed": (changed(rows, 6), links),
        "event deleted": ([r for r in rows if r[0] != 6], links),
        "link deleted": (rows, [k for k in links if k.sequence != 6]),
        "both deleted": ([r for r in rows if r[0] != 6], [k for k in links if k.sequence != 6]),
        "inserted": (sorted([*rows, (4, a, 9, "t:X", b"{}")]), links),
        "versions swapped, rechained": (
            swapped_versions,
            extend(None, [stored(*r) for r in swapped_versions]),
        ),
        "versions swapped": (swapped_versions, links),
        "links rewritten": (changed(rows, 3), extend(None, [stored(*r) for r in changed(rows, 3)])),
        "first link missing": (rows, links[1:]),
        "last event missing": (rows[:-1], links),
    }


def test_reading_in_pages_gives_the_report_feeding_item_by_item_gives() -> None:
    consistent = ("intact", "versions swapped, rechained", "links rewritten")
    heads = {}
    for case, (rows, links) in _tampered().items():
        for size in (1, 2, 3, 4, 7, 100):
            source = _Paged(rows, links, size)
            paged = verify(source, watch=[3, 7, 12])
            one_by_one = verify(source.items(), watch=[3, 7, 12])
            assert paged == one_by_one, (case, size)
            assert paged.ok is (case in consistent), case
            heads[case] = paged.recomputed_at.get(12)
    # Links rewritten after a change verify on their own; only the head a checkpoint signed
    # (here: the intact chain's) tells.
    assert heads["links rewritten"] != heads["intact"]
