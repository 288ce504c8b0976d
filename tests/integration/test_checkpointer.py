"""The relay's checkpointer on a real PostgreSQL: when it signs, and that a quiet ledger's
newest events are signed once the interval has passed, without waiting for more traffic."""

from __future__ import annotations

import time
from datetime import timedelta

from ledger.application.service import Ledger
from ledger.integrity.checkpointer import Checkpointer, table_opener
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key, verify_signature
from ledger.integrity.notes import verify_checkpoint
from ledger.integrity.witnesses import Witness, Witnessing
from ledger.process.settings import Settings
from ledger.wire import avro
from tests import builders as b
from tests.history import ledger
from tests.witness import HttpWitness, serving

__all__ = ["ledger"]  # fixtures


def test_published_events_are_signed_when_idle_once_the_interval_has_passed(
    ledger: Ledger, settings_db_only: Settings
) -> None:
    ledger.record([b.define_purpose(), b.grant(b.REF), b.collect(b.REF)])
    head = ledger.store.max_notification_id() or 0
    signer = CheckpointSigner(new_private_key())
    sent: list[bytes] = []
    opener = table_opener(settings_db_only.require_database(), settings_db_only.database_schema)
    checkpointer = Checkpointer(
        ledger.store, opener, signer, sent.append, every=1_000, interval=timedelta(seconds=0.3)
    )

    assert checkpointer.idle() is None  # nothing published yet
    assert checkpointer.published(head, head) is None  # neither 1,000 events nor 0.3 s
    assert checkpointer.idle() is None
    time.sleep(0.35)
    made = checkpointer.idle()

    assert made is not None and made.sequence == head
    assert verify_signature(made, signer.public_key) and len(sent) == 1
    time.sleep(0.35)
    assert checkpointer.idle() is None  # nothing new since


def test_the_published_checkpoint_carries_the_witnesses_cosignatures(
    ledger: Ledger, settings_db_only: Settings
) -> None:
    ledger.record([b.define_purpose(), b.grant(b.REF)])
    head = ledger.store.max_notification_id() or 0
    signer = CheckpointSigner(new_private_key(), "ledger.example/relay")
    sent: list[bytes] = []
    opener = table_opener(settings_db_only.require_database(), settings_db_only.database_schema)
    with serving(HttpWitness("witness.example/w", signer.notes.vkey)) as witness:
        checkpointer = Checkpointer(
            ledger.store,
            opener,
            signer,
            sent.append,
            every=1,
            interval=timedelta(minutes=10),
            witnessing=Witnessing([Witness(witness.vkey, witness.url)]),
        )
        made = checkpointer.published(head, head)

    assert made is not None and made.note is not None
    _, published = avro.decode(sent[0])
    assert (published["tree_size"], published["root"]) == (made.tree_size, made.root)
    assert published["note"] == made.note  # the topic's copy carries the cosignature too
    verdict = verify_checkpoint(made.note, [signer.notes.vkey], [witness.vkey], quorum=1)
    assert verdict.head.size == made.tree_size == ledger.store.tree_size()
