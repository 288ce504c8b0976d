"""Re-applying erasures from the ledger topic to a ledger that lacks them (in memory)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from ledger.application.service import Ledger
from ledger.domain.subject import Subject, step_id
from ledger.erasure.journal import JournalRead
from ledger.erasure.reconcile import reconcile
from ledger.webhooks.notice import Erasure
from tests.builders import IP, REF, TENANT, grant, memory_ledger
from tests.ledger_cases import BOB, ready, reasons, statuses, subject_id

REQUESTED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class FakeJournal:
    """The topic as a list: each read returns what was not read before."""

    topic = "compliance.ledger"

    def __init__(self) -> None:
        self.published: list[Erasure] = []
        self.saved = 0

    def read(self) -> JournalRead:
        unread = self.published[self.saved :]
        return JournalRead(records=len(unread), max_sequence=99, erasures=unread)

    def save(self, read: JournalRead) -> None:
        self.saved += len(read.erasures)


def erasure_of(subject: UUID, request: str = "erase-1") -> Erasure:
    return Erasure(TENANT, subject, request, 42, REQUESTED, REQUESTED, {"bank": ("d-1",)})


def two_subjects() -> tuple[Ledger, UUID, UUID]:
    ledger = ready(memory_ledger())
    assert statuses(ledger.record([grant(REF, ip_address=IP), grant(BOB)])) == ["recorded"] * 2
    alice, bob = subject_id(ledger, REF), subject_id(ledger, BOB)
    assert alice is not None and bob is not None
    return ledger, alice, bob


def test_an_erasure_the_ledger_lacks_is_recorded_with_the_shredding() -> None:
    ledger, alice, bob = two_subjects()
    assert ledger.keys.data_key(alice) is not None  # cached in process
    journal = FakeJournal()
    journal.published.append(erasure_of(alice))

    report = reconcile(ledger, journal)

    assert (report.records_read, report.erasures_read, report.recorded) == (1, 1, 1)
    assert ledger.store.wrapped_keys([alice]) == {} and subject_id(ledger, REF) is None
    assert ledger.store.erased_refs(TENANT, [ledger.keys.digest(TENANT, REF)])
    assert ledger.keys.data_key(alice) is None
    shredded = ledger.subject_events(alice)[-1]
    assert isinstance(shredded, Subject.KeysShredded)
    assert shredded.event_id == step_id("erase-1", "shredded")
    assert (shredded.request_event_id, shredded.disclosed_to) == ("erase-1", {"bank": ["d-1"]})
    assert reasons(ledger.record([grant(REF)])) == ["subject_erased"]
    assert ledger.store.wrapped_keys([bob]) and subject_id(ledger, BOB) == bob


def test_the_restored_subject_refuses_events_by_its_id_too() -> None:
    ledger, alice, _ = two_subjects()
    journal = FakeJournal()
    journal.published.append(erasure_of(alice))
    reconcile(ledger, journal)
    subject = ledger.repository.get(alice)
    assert isinstance(subject, Subject)
    assert subject.erasure_request_id == "erase-1" and subject.shredded_at == REQUESTED
    assert not subject.reapply_shredding(
        request_event_id="erase-1", disclosed_to={}, occurred_at=REQUESTED
    )


def test_reconciling_again_changes_nothing() -> None:
    ledger, alice, _ = two_subjects()
    journal = FakeJournal()
    journal.published.append(erasure_of(alice))
    reconcile(ledger, journal)
    events = len(ledger.subject_events(alice))

    again = reconcile(ledger, journal)
    journal.saved = 0  # the topic read from the start once more
    replayed = reconcile(ledger, journal)

    assert (again.records_read, again.changed) == (0, 0)
    assert (replayed.already_erased, replayed.changed) == (1, 0)
    assert len(ledger.subject_events(alice)) == events


def test_a_key_back_under_a_recorded_shredding_is_shredded_again() -> None:
    ledger, alice, _ = two_subjects()
    key = ledger.store.wrapped_keys([alice])[alice]
    journal = FakeJournal()
    journal.published.append(erasure_of(alice))
    reconcile(ledger, journal)
    ledger.store.keys[alice] = key  # an old key table restored

    journal.saved = 0
    report = reconcile(ledger, journal)

    assert (report.shredded, report.recorded) == (1, 0)
    assert ledger.store.wrapped_keys([alice]) == {}


def test_an_erasure_of_a_subject_this_database_never_held_needs_nothing() -> None:
    ledger, _, _ = two_subjects()
    journal = FakeJournal()
    journal.published.append(erasure_of(uuid.uuid4()))
    report = reconcile(ledger, journal)
    assert (report.not_in_database, report.changed) == (1, 0)
