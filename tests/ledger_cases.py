"""Contract tests for the ledger's storage, written once and run against every recorder.

A subclass provides three fixtures:

- ``ledger``: a ledger on a fresh, empty store;
- ``open_same_store``: opens another ledger instance on the *same* store with the same keys
  (as a second process would), with its own in-process caches;
- ``open_other_store``: opens a ledger on another empty store with the same keys.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from ledger.application.service import Ledger, Outcome
from ledger.domain.subject import Subject
from ledger.domain.tenant import TENANT_NAMESPACE
from ledger.domain.values import LegalBasis
from ledger.wire.contract import Command
from tests.builders import (
    IP,
    REF,
    TENANT,
    USER_AGENT,
    collect,
    define_purpose,
    disclose,
    erase,
    grant,
    withdraw,
)

OpenLedger = Callable[[], Ledger]
BOB = "bob.smith@example.org"
PERSONAL = [
    REF,
    BOB,
    IP,
    USER_AGENT,
    "signed paper form of Alice Example",
    "Alice's home address, 12 Rose Lane",
    "forwarded to alice.private@example.org",
    "Alice moved to Lisbon",
]


def catalogue(tenant: str = TENANT) -> list[Command]:
    return [
        define_purpose("newsletter", tenant=tenant),
        define_purpose("terms", required=True, tenant=tenant),
        define_purpose("billing", basis=LegalBasis.CONTRACT, tenant=tenant),
    ]


def ready(ledger: Ledger, tenant: str = TENANT) -> Ledger:
    """Registers ``tenant`` with a small purpose catalogue."""
    ledger.register_tenant(tenant, f"{tenant.title()} Ltd")
    assert statuses(ledger.record(catalogue(tenant))) == ["recorded"] * 3
    return ledger


def statuses(outcomes: Sequence[Outcome]) -> list[str]:
    return [o.status for o in outcomes]


def reasons(outcomes: Sequence[Outcome]) -> list[str | None]:
    return [o.reason for o in outcomes]


def event_count(ledger: Ledger) -> int:
    return len(ledger.store.select_notifications(1, 10_000))


def versions_of(ledger: Ledger, aggregate_id: UUID | None) -> list[int]:
    assert aggregate_id is not None
    return [e.originator_version for e in ledger.store.select_aggregates_events([aggregate_id])]


def subject_id(ledger: Ledger, ref: str, tenant: str = TENANT) -> UUID | None:
    digest = ledger.keys.digest(tenant, ref)
    return ledger.store.lookup_subjects(tenant, [digest]).get(digest)


class SpyOnNewSubjects:
    """Wraps ``ledger.keys.create`` to note every subject id the ledger makes a key for."""

    def __init__(self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ids: list[UUID] = []
        original = ledger.keys.create

        def create(subject_id: UUID, tenant: str) -> Any:
            self.ids.append(subject_id)
            return original(subject_id, tenant)

        monkeypatch.setattr(ledger.keys, "create", create)


class CountConflicts:
    """Wraps ``ledger.save`` to count saves the store refused with an IntegrityError."""

    def __init__(self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = ledger.save

        def save(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            except IntegrityError:
                self.count += 1
                raise

        monkeypatch.setattr(ledger, "save", save)


class LedgerCases:
    @pytest.fixture
    def ledger(self) -> Ledger:
        raise NotImplementedError

    @pytest.fixture
    def open_same_store(self) -> OpenLedger:
        raise NotImplementedError

    @pytest.fixture
    def open_other_store(self) -> OpenLedger:
        raise NotImplementedError

    # The purpose catalogue.

    def test_a_purpose_that_asks_no_consent_is_defined_without_consent_text(
        self, ledger: Ledger
    ) -> None:
        ready(ledger)
        outcomes = ledger.record(
            [
                define_purpose("payroll", "", text="", basis=LegalBasis.CONTRACT),
                disclose(REF, "payroll", LegalBasis.CONTRACT),
                define_purpose("marketing", "", text=""),  # consent-based: text needed
            ]
        )
        assert statuses(outcomes) == ["recorded", "recorded", "rejected"]
        assert reasons(outcomes)[2] == "schema_invalid"
        payroll = ledger.tenant(TENANT).purpose("payroll")
        assert (payroll.legal_basis, payroll.texts) == (LegalBasis.CONTRACT, {})

    # Batches.

    def test_a_batch_records_valid_commands_and_refuses_invalid_ones_in_order(
        self, ledger: Ledger
    ) -> None:
        ready(ledger)
        before = event_count(ledger)
        outcomes = ledger.record(
            [
                grant(REF),
                withdraw(REF, "terms"),
                collect(REF),
                disclose(REF, "billing", LegalBasis.LEGITIMATE_INTERESTS),
                grant(BOB, "profiling"),
                disclose(REF),
            ]
        )
        assert statuses(outcomes) == [
            "recorded",
            "rejected",
            "recorded",
            "rejected",
            "rejected",
            "recorded",
        ]
        assert reasons(outcomes) == [
            None,
            "required_consent",
            None,
            "no_legal_basis",
            "unknown_purpose",
            None,
        ]
        alice = subject_id(ledger, REF)
        assert [(o.aggregate_id, o.version) for o in outcomes if o.status == "recorded"] == [
            (alice, 2),
            (alice, 3),
            (alice, 4),
        ]
        assert versions_of(ledger, alice) == [1, 2, 3, 4]
        assert event_count(ledger) == before + 4
        assert all(o.detail for o in outcomes if o.status == "rejected")

    def test_re_recording_a_batch_reports_duplicates_and_adds_nothing(self, ledger: Ledger) -> None:
        ready(ledger)
        batch = [grant(REF), collect(REF), grant(BOB), disclose(BOB), define_purpose("ads")]
        assert statuses(ledger.record(batch)) == ["recorded"] * 5
        count = event_count(ledger)

        again = ledger.record(batch)

        assert again == [Outcome("duplicate")] * 5
        assert event_count(ledger) == count

    def test_a_repeated_event_id_inside_one_batch_is_recorded_once(self, ledger: Ledger) -> None:
        ready(ledger)
        before = event_count(ledger)
        outcomes = ledger.record([grant(REF, event_id="evt-1"), collect(REF, event_id="evt-1")])
        assert statuses(outcomes) == ["recorded", "duplicate"]
        assert event_count(ledger) == before + 2  # the subject's registration and one fact

    def test_a_refused_command_does_not_use_up_its_event_id(self, ledger: Ledger) -> None:
        ready(ledger)
        outcomes = ledger.record([grant(REF, "profiling", event_id="e"), grant(REF, event_id="e")])
        assert statuses(outcomes) == ["rejected", "recorded"]

    def test_event_ids_are_unique_per_tenant_not_globally(self, ledger: Ledger) -> None:
        ready(ledger)
        ready(ledger, "globex")
        outcomes = ledger.record(
            [grant(REF, event_id="e-1"), grant(REF, event_id="e-1", tenant="globex")]
        )
        assert statuses(outcomes) == ["recorded", "recorded"]

    def test_an_unknown_tenant_is_refused(self, ledger: Ledger) -> None:
        ready(ledger)
        before = event_count(ledger)
        outcomes = ledger.record([grant(REF, tenant="nobody"), define_purpose(tenant="nobody")])
        assert reasons(outcomes) == ["unknown_tenant", "unknown_tenant"]
        assert event_count(ledger) == before
        assert subject_id(ledger, REF, "nobody") is None

    # New subjects.

    def test_a_new_subject_whose_only_command_is_refused_is_not_stored(
        self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ready(ledger)
        spy = SpyOnNewSubjects(ledger, monkeypatch)
        before = event_count(ledger)

        outcomes = ledger.record([withdraw(REF), grant(BOB, "profiling"), disclose(BOB)])

        assert reasons(outcomes) == ["consent_not_granted", "unknown_purpose", "no_legal_basis"]
        assert spy.ids  # the ledger did make subjects for them...
        assert event_count(ledger) == before  # ...and stored none of it
        assert ledger.store.wrapped_keys(spy.ids) == {}
        assert subject_id(ledger, REF) is None
        assert subject_id(ledger, BOB) is None
        assert ledger.find_subject(TENANT, REF) is None

    def test_a_new_subject_is_stored_once_when_a_later_command_of_the_batch_is_recorded(
        self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ready(ledger)
        spy = SpyOnNewSubjects(ledger, monkeypatch)

        outcomes = ledger.record([withdraw(REF), grant(REF), collect(REF)])

        assert statuses(outcomes) == ["rejected", "recorded", "recorded"]
        assert len(spy.ids) == 1
        alice = subject_id(ledger, REF)
        assert alice == spy.ids[0] == outcomes[1].aggregate_id
        assert versions_of(ledger, alice) == [1, 2, 3]
        assert set(ledger.store.wrapped_keys(spy.ids)) == {alice}

    def test_the_same_reference_in_two_tenants_is_two_subjects(self, ledger: Ledger) -> None:
        ready(ledger)
        ready(ledger, "globex")
        outcomes = ledger.record([grant(REF), grant(REF, tenant="globex")])
        acme, globex = (o.aggregate_id for o in outcomes)
        assert acme is not None and globex is not None
        assert acme != globex
        assert subject_id(ledger, REF) == acme
        assert subject_id(ledger, REF, "globex") == globex
        assert set(ledger.store.wrapped_keys([acme, globex])) == {acme, globex}

    def test_subject_ids_are_random(self, ledger: Ledger, open_other_store: OpenLedger) -> None:
        other = open_other_store()
        assert other.keys.digest(TENANT, REF) == ledger.keys.digest(TENANT, REF)
        first = ready(ledger).record([grant(REF)])[0].aggregate_id
        second = ready(other).record([grant(REF)])[0].aggregate_id
        assert first is not None and second is not None
        assert first != second  # same reference, same lookup key, different subject
        assert first.version == second.version == 4

        digest = ledger.keys.digest(TENANT, REF)
        derived: set[UUID] = {
            UUID(bytes=digest[:16]),
            UUID(bytes=digest[-16:]),
            UUID(bytes=hashlib.sha256(REF.encode()).digest()[:16]),
            UUID(bytes=hashlib.md5(REF.encode()).digest()),  # noqa: S324
        }
        for namespace in (
            TENANT_NAMESPACE,
            uuid.NAMESPACE_URL,
            uuid.NAMESPACE_DNS,
            uuid.NAMESPACE_OID,
            uuid.NAMESPACE_X500,
        ):
            for name in (REF, f"{TENANT}:{REF}", f"{TENANT}/{REF}", f"{TENANT}\x00{REF}"):
                derived |= {uuid.uuid5(namespace, name), uuid.uuid3(namespace, name)}
        assert first not in derived
        assert second not in derived

    # What is stored.

    def test_stored_events_hold_no_personal_value_nor_the_reference(self, ledger: Ledger) -> None:
        ready(ledger)
        outcomes = ledger.record(
            [
                grant(REF, ip_address=IP, user_agent=USER_AGENT, evidence=PERSONAL[4]),
                collect(REF, description=PERSONAL[5]),
                disclose(REF, note=PERSONAL[6]),
                withdraw(REF, evidence=PERSONAL[4]),
                grant(BOB),
                erase(REF, reason=PERSONAL[7]),
            ]
        )
        assert statuses(outcomes) == ["recorded"] * 6
        states = [n.state for n in ledger.store.select_notifications(1, 10_000)]
        # tenant and catalogue, two registrations, six facts, and the erasure's KeysShredded
        assert len(states) == 4 + 2 + 6 + 1
        for state in states:
            for value in PERSONAL:
                assert value.encode() not in state

    # Erasure.

    def test_erasure_of_an_unknown_reference_is_refused(
        self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ready(ledger)
        spy = SpyOnNewSubjects(ledger, monkeypatch)
        before = event_count(ledger)
        outcomes = ledger.record([erase(REF)])
        assert reasons(outcomes) == ["unknown_subject"]
        assert event_count(ledger) == before
        assert subject_id(ledger, REF) is None
        assert spy.ids == []  # not even a data key was made for it

    def test_after_erasure_every_further_command_is_refused(self, ledger: Ledger) -> None:
        ready(ledger)
        assert statuses(ledger.record([grant(REF), grant(REF, "terms")])) == ["recorded"] * 2
        alice = subject_id(ledger, REF)
        assert alice is not None
        assert statuses(ledger.record([erase(REF)])) == ["recorded"]
        count = event_count(ledger)

        outcomes = ledger.record(
            [
                grant(REF),
                withdraw(REF),
                collect(REF),
                disclose(REF),
                disclose(REF, "billing", LegalBasis.CONTRACT),
                erase(REF),
            ]
        )

        assert reasons(outcomes) == ["subject_erased"] * 6
        assert event_count(ledger) == count
        assert versions_of(ledger, alice) == [1, 2, 3, 4, 5]  # ..., requested, shredded

    def test_commands_after_an_erasure_in_the_same_batch_are_refused(self, ledger: Ledger) -> None:
        ready(ledger)
        outcomes = ledger.record([grant(REF), erase(REF), collect(REF)])
        assert statuses(outcomes) == ["recorded", "recorded", "rejected"]
        assert outcomes[2].reason == "subject_erased"

    # Reading.

    def test_find_subject_finds_the_subject_by_reference(self, ledger: Ledger) -> None:
        ready(ledger)
        ready(ledger, "globex")
        alice = ledger.record([grant(REF)])[0].aggregate_id

        found = ledger.find_subject(TENANT, REF)

        assert isinstance(found, Subject)
        assert found.id == alice
        assert found.has_consent("newsletter")
        assert ledger.find_subject(TENANT, BOB) is None
        assert ledger.find_subject("globex", REF) is None

    def test_a_fresh_instance_finds_what_another_recorded(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        alice = ledger.record([grant(REF), collect(REF)])[0].aggregate_id
        other = open_same_store()
        found = other.find_subject(TENANT, REF)
        assert found is not None
        assert (found.id, found.version, found.has_consent("newsletter")) == (alice, 3, True)

    # Two instances on one store.

    def test_stale_instances_recording_alternately_keep_versions_consecutive(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        other = open_same_store()
        recorded: list[Outcome] = []
        for i in range(6):
            writer = ledger if i % 2 == 0 else other
            recorded += writer.record([collect(REF, categories=[f"category-{i}"])])
            recorded += writer.record([grant(REF)])

        assert statuses(recorded) == ["recorded"] * 12
        alice = subject_id(ledger, REF)
        assert {o.aggregate_id for o in recorded} == {alice}
        assert [o.version for o in recorded] == list(range(2, 14))
        assert versions_of(ledger, alice) == list(range(1, 14))

    def test_a_write_between_reading_and_saving_makes_the_batch_run_again(
        self, ledger: Ledger, open_same_store: OpenLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ready(ledger)
        other = open_same_store()
        alice = ledger.record([grant(REF)])[0].aggregate_id
        conflicts = CountConflicts(ledger, monkeypatch)
        interleaved: list[Outcome] = []
        save = ledger.save

        def other_writes_first(*args: Any, **kwargs: Any) -> Any:
            if not interleaved:  # once: ``other`` records after ``ledger`` read the subject
                interleaved.extend(other.record([collect(REF), grant(BOB)]))
            return save(*args, **kwargs)

        monkeypatch.setattr(ledger, "save", other_writes_first)
        outcomes = ledger.record([disclose(REF), grant(BOB, "terms")])

        assert statuses(interleaved) == statuses(outcomes) == ["recorded"] * 2
        assert conflicts.count == 1
        assert [o.version for o in interleaved] == [3, 2]
        assert [o.version for o in outcomes] == [4, 3]
        assert outcomes[1].aggregate_id == interleaved[1].aggregate_id == subject_id(ledger, BOB)
        assert versions_of(ledger, alice) == [1, 2, 3, 4]
        assert versions_of(ledger, subject_id(ledger, BOB)) == [1, 2, 3]

    def test_a_stale_instance_does_not_record_what_the_current_state_forbids(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        other = open_same_store()
        assert statuses(ledger.record([grant(REF)])) == ["recorded"]
        assert statuses(other.record([withdraw(REF)])) == ["recorded"]

        # ``ledger`` still caches the subject with its consent.
        outcomes = ledger.record([disclose(REF)])

        assert reasons(outcomes) == ["no_legal_basis"]

    def test_a_stale_instance_refuses_commands_for_a_subject_erased_elsewhere(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        other = open_same_store()
        assert statuses(ledger.record([grant(REF)])) == ["recorded"]
        assert statuses(other.record([erase(REF)])) == ["recorded"]

        assert reasons(ledger.record([collect(REF), grant(REF)])) == ["subject_erased"] * 2

    def test_a_stale_instance_judges_by_the_current_state(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        other = open_same_store()
        assert statuses(ledger.record([collect(REF)])) == ["recorded"]
        assert statuses(other.record([grant(REF)])) == ["recorded"]

        # ``ledger`` still caches the subject without consent; the consent exists.
        outcomes = ledger.record([disclose(REF), withdraw(REF)])

        assert statuses(outcomes) == ["recorded", "recorded"], reasons(outcomes)

    def test_a_purpose_defined_through_another_instance_is_known_at_once(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        other = open_same_store()
        assert statuses(ledger.record([grant(REF)])) == ["recorded"]
        assert statuses(other.record([define_purpose("ads")])) == ["recorded"]
        assert statuses(ledger.record([grant(REF, "ads")])) == ["recorded"]

    def test_an_event_recorded_by_another_instance_is_a_duplicate(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        batch = [grant(REF), collect(REF)]
        assert statuses(ledger.record(batch)) == ["recorded"] * 2
        count = event_count(ledger)
        assert statuses(open_same_store().record(batch)) == ["duplicate"] * 2
        assert event_count(ledger) == count

    def test_two_instances_meeting_a_new_reference_at_once_make_one_subject(
        self, ledger: Ledger, open_same_store: OpenLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ready(ledger)
        late = open_same_store()
        spy = SpyOnNewSubjects(late, monkeypatch)
        alice = ledger.record([grant(REF)])[0].aggregate_id

        # ``late`` looked the reference up before ``ledger`` committed: it saw no subject.
        real_lookup = late.store.lookup_subjects
        calls = []

        def lookup_once_too_early(tenant: str, digests: Sequence[bytes]) -> dict[bytes, UUID]:
            calls.append(tenant)
            return {} if len(calls) == 1 else real_lookup(tenant, digests)

        monkeypatch.setattr(late.store, "lookup_subjects", lookup_once_too_early)
        outcomes = late.record([collect(REF)])
        monkeypatch.undo()

        assert statuses(outcomes) == ["recorded"]
        assert outcomes[0].aggregate_id == alice
        assert versions_of(ledger, alice) == [1, 2, 3]
        assert subject_id(ledger, REF) == alice
        [made_in_vain] = spy.ids  # the first attempt made a subject; the store refused it
        assert made_in_vain != alice
        assert ledger.store.wrapped_keys([made_in_vain]) == {}
        assert ledger.store.select_aggregates_events([made_in_vain]) == []


def in_threads(writers: Sequence[Ledger], write: Callable[[Ledger, int], None]) -> None:
    """Runs ``write(writer, n)`` for each writer on a thread of its own, all at once; a writer
    that raised fails the test with its exception, never lost in its thread."""
    errors: list[BaseException] = []

    def run(writer: Ledger, n: int) -> None:
        try:
            write(writer, n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, n)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        pytest.fail(f"a writer failed: {errors!r}")
