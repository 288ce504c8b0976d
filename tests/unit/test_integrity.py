"""The chain and checkpoint formats, pinned to the values docs/audit.md states, and the
standalone verifier agreeing with the ledger's own on an in-memory ledger."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from ledger.application import Ledger
from ledger.crypto import LocalKek, new_secret
from ledger.integrity.chain import GENESIS, Stored, link_hash
from ledger.integrity.checkpoints import (
    Checkpoint,
    CheckpointSigner,
    new_private_key,
    verify_signature,
)
from ledger.integrity.sources import export_line, item_from_line, store_items
from ledger.integrity.verify import verify
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
