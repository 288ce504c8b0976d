"""Witnesses cosign checkpoints over the tlog-witness protocol, and an audit that requires a
quorum of their cosignatures refuses a checkpoint without it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from ledger.application.service import Ledger
from ledger.integrity import audit, proofs
from ledger.integrity.audit import WitnessPolicy
from ledger.integrity.checkpoint_store import ChainBroken, CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.integrity.notes import NoteError, TreeHead, verify_checkpoint
from ledger.integrity.sources import store_items
from ledger.integrity.witnesses import Witness, Witnessing
from ledger.process.settings import load
from tests.builders import REF, collect, disclose, grant
from tests.integration.test_audit_tamper import env, ledger
from tests.ledger_cases import BOB
from tests.witness import HttpWitness, serving

__all__ = ["env", "ledger"]  # fixtures


@pytest.fixture
def table(env: dict[str, str]) -> Iterator[CheckpointTable]:
    with psycopg.connect(env["LEDGER_DATABASE_URL"], autocommit=True) as conn:
        yield CheckpointTable(conn, load(env).database_schema)


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(new_private_key(), "ledger.example/test")


@pytest.fixture
def witnesses(signer: CheckpointSigner) -> Iterator[list[HttpWitness]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(serving(HttpWitness(f"witness{i}.example", signer.notes.vkey)))
            for i in range(2)
        ]


def test_witnesses_cosign_each_checkpoint_from_the_size_they_last_saw(
    ledger: Ledger, table: CheckpointTable, signer: CheckpointSigner, witnesses: list[Any]
) -> None:
    down = HttpWitness("witness-down.example", signer.notes.vkey)  # never served
    asked = Witnessing(
        [Witness(w.vkey, w.url) for w in witnesses] + [Witness(down.vkey, "http://127.0.0.1:9")]
    )
    made = make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id() or 0)
    assert made is not None and made.note is not None
    returned = asked.cosign(ledger.store, table, made)
    assert asked.cosigned == 2  # the third is down: logged, no delay
    first = table.latest()
    assert first == returned and first is not None and first.note is not None
    keys = [w.vkey for w in witnesses]
    verdict = verify_checkpoint(first.note, [signer.notes.vkey], keys, quorum=2)
    assert verdict.head == TreeHead("ledger.example/test", made.tree_size or 0, made.root or b"")
    with pytest.raises(NoteError, match="2 of the required 3"):
        verify_checkpoint(first.note, [signer.notes.vkey], [*keys, down.vkey], quorum=3)

    ledger.record([grant("carol@example.com"), disclose(BOB)])
    table.set_witness_size(witnesses[1].name, 0)  # the log forgot what witness1 saw
    second = make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id() or 0)
    assert second is not None
    asked.cosign(ledger.store, table, second)
    assert asked.cosigned == 2
    assert witnesses[0].seen == [200, 200]  # asked with the right old size and proof
    assert witnesses[1].seen == [200, 409, 200]  # told its size, then asked from there
    latest = table.latest()
    assert latest is not None and latest.note is not None
    assert len(verify_checkpoint(latest.note, [signer.notes.vkey], keys, 2).witnesses) == 2


def test_a_witness_refuses_a_tree_that_does_not_extend_what_it_cosigned(
    ledger: Ledger, table: CheckpointTable, signer: CheckpointSigner, witnesses: list[Any]
) -> None:
    asked = Witnessing([Witness(w.vkey, w.url) for w in witnesses])
    made = make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id() or 0)
    assert made is not None
    asked.cosign(ledger.store, table, made)
    assert asked.cosigned == 2
    ledger.record([collect(REF)])
    size = ledger.store.grow_tree()
    forked = signer.sign(made.sequence + 1, made.head, made_at(made), (size, bytes(32)))
    table.add(forked, signer.public_key)  # a fork: signed, stored, but not this tree

    assert asked.cosign(ledger.store, table, forked) == forked and asked.cosigned == 0
    assert [w.seen[-1] for w in witnesses] == [422, 422]


def made_at(checkpoint: Any) -> datetime:
    return datetime.fromtimestamp(checkpoint.time_us / 1e6, UTC)


def test_an_audit_requiring_a_quorum_refuses_checkpoints_without_it(
    ledger: Ledger, table: CheckpointTable, signer: CheckpointSigner, witnesses: list[Any]
) -> None:
    asked = Witnessing([Witness(witnesses[0].vkey, witnesses[0].url)])
    made = make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id() or 0)
    assert made is not None
    asked.cosign(ledger.store, table, made)
    held = table.all()
    keys = [w.vkey for w in witnesses]

    one = audit.run(
        "store",
        store_items(ledger.store),
        held,
        [signer.public_key],
        witnesses=WitnessPolicy(keys, 1),
    )
    assert one.ok, one.lines()
    two = audit.run(
        "store",
        store_items(ledger.store),
        held,
        [signer.public_key],
        witnesses=WitnessPolicy(keys, 2),
    )
    assert not two.ok
    assert "1 of the required 2 witness cosignatures verify" in "\n".join(two.lines())


def test_a_changed_tree_is_never_signed_and_the_audit_finds_where(
    ledger: Ledger, table: CheckpointTable, signer: CheckpointSigner, env: dict[str, str]
) -> None:
    first = make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id() or 0)
    assert first is not None and first.tree_size == 11
    ledger.record([grant(REF, purpose="billing"), collect(BOB)])
    assert ledger.store.grow_tree() == 12  # the grant of a contract purpose is refused
    schema = load(env).database_schema

    def overwrite(index: int) -> None:
        with psycopg.connect(env["LEDGER_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                f'UPDATE "{schema}".merkle SET hash = %s WHERE level = 0 AND idx = %s',
                [bytes(32), index],
            )

    overwrite(11)  # since the checkpoint: the roots still agree, its parent does not
    with pytest.raises(ChainBroken, match="level 1, index 5"):
        make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id() or 0)

    overwrite(2)  # before it: proofs through it would no longer lead to the signed root
    result = audit.run("store", store_items(ledger.store), table.all(), [signer.public_key])
    assert result.ok  # the events, the chain and the checkpoint are intact...
    found = audit.stored_tree_problems(ledger.store, result.report)
    assert [(p.reason, p.position) for p in found] == [("tree", ledger.store.leaf_sequence(2))]
    assert "level 1, index 1" in found[0].detail  # ...the stored tree is not
    broken = proofs.inclusion(ledger.store, ledger.store.leaf_sequence(3) or 0, 11)
    assert not broken.verifies()  # what the API refuses to serve
