"""Contract cases for the erasure workflow, run against every ledger store (memory, Postgres).

A request moves requested → keys shredded → processors notified → completed, each step an
event; a legal hold turns the request into a recorded refusal instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.application.service import Ledger
from ledger.domain.rules import ErasureStepOutOfOrder
from ledger.domain.subject import Subject, step_id
from ledger.domain.values import LegalBasis
from tests.builders import REF, collect, disclose, erase, grant, hold, release, withdraw
from tests.ledger_cases import ready, reasons, statuses, subject_id


def events_of(ledger: Ledger, ref: str) -> list[object]:
    found = subject_id(ledger, ref)
    assert found is not None
    return ledger.subject_events(found)


def kinds(events: list[object]) -> list[str]:
    return [type(e).__qualname__.split(".")[-1] for e in events]


class ErasureCases:
    def test_erasure_shreds_the_key_and_lookup_with_the_fact(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), disclose(REF, recipient="mailer-inc", event_id="d-1")])
        ledger.record([disclose(REF, "billing", LegalBasis.CONTRACT, "d-2", recipient="bank")])
        alice = subject_id(ledger, REF)
        assert alice is not None and ledger.store.wrapped_keys([alice])
        request = erase(REF)

        assert statuses(ledger.record([request])) == ["recorded"]

        events = ledger.subject_events(alice)
        assert kinds(events)[-2:] == ["ErasureRequested", "KeysShredded"]
        shredded = events[-1]
        assert isinstance(shredded, Subject.KeysShredded)
        assert shredded.request_event_id == request.envelope.event_id
        assert shredded.disclosed_to == {"bank": ["d-2"], "mailer-inc": ["d-1"]}
        assert shredded.event_id == step_id(request.envelope.event_id, "shredded")
        assert ledger.store.wrapped_keys([alice]) == {}
        assert subject_id(ledger, REF) is None
        assert ledger.keys.data_key(alice) is None  # the process cache forgot it too

    def test_a_subject_new_in_the_batch_that_erases_it_keeps_no_key(self, ledger: Ledger) -> None:
        ready(ledger)
        outcomes = ledger.record([grant(REF), erase(REF)])
        assert statuses(outcomes) == ["recorded"] * 2
        alice = outcomes[0].aggregate_id
        assert alice is not None
        assert subject_id(ledger, REF) is None
        assert ledger.store.wrapped_keys([alice]) == {}
        assert reasons(ledger.record([grant(REF)])) == ["subject_erased"]

    def test_an_erased_reference_never_becomes_a_new_subject(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF)])
        ledger.record([erase(REF)])
        before = len(ledger.store.select_notifications(1, 10_000))

        outcomes = ledger.record([grant(REF), collect(REF), erase(REF)])

        assert reasons(outcomes) == ["subject_erased"] * 3
        assert len(ledger.store.select_notifications(1, 10_000)) == before
        digest = ledger.keys.digest("acme", REF)
        assert ledger.store.erased_refs("acme", [digest]) == {digest}
        assert ledger.store.lookup_subjects("acme", [digest]) == {}

    def test_a_legal_hold_turns_the_request_into_a_recorded_refusal(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), hold(REF, "case-7", note="the lawsuit")])
        alice = subject_id(ledger, REF)
        request = erase(REF)

        assert statuses(ledger.record([request])) == ["recorded"]

        events = events_of(ledger, REF)
        assert kinds(events)[-2:] == ["ErasureRequested", "ErasureRefused"]
        refused = events[-1]
        assert isinstance(refused, Subject.ErasureRefused)
        assert (refused.reason, refused.hold_references) == ("legal_hold", ["case-7"])
        assert refused.request_event_id == request.envelope.event_id
        assert alice is not None and ledger.store.wrapped_keys([alice])
        # The subject lives on: consents still change while the hold lasts.
        assert statuses(ledger.record([withdraw(REF)])) == ["recorded"]

    def test_after_the_hold_is_released_erasure_goes_ahead(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), hold(REF, "case-7"), hold(REF, "case-8")])
        ledger.record([release(REF, "case-7"), erase(REF)])
        assert kinds(events_of(ledger, REF))[-1] == "ErasureRefused"  # case-8 still holds

        alice = subject_id(ledger, REF)
        assert statuses(ledger.record([release(REF, "case-8"), erase(REF)])) == ["recorded"] * 2
        assert alice is not None and ledger.store.wrapped_keys([alice]) == {}

    def test_releasing_a_hold_never_placed_is_refused(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF)])
        assert reasons(ledger.record([release(REF, "case-9")])) == ["legal_hold_unknown"]

    def test_notification_completes_the_workflow_once(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF)])
        alice = subject_id(ledger, REF)
        assert alice is not None
        with pytest.raises(ErasureStepOutOfOrder):
            ledger.record_notification(alice, [], datetime.now(UTC))
        request = erase(REF)
        ledger.record([request])
        deliveries: list[dict[str, object]] = [
            {"recipient": "mailer-inc", "delivery_id": "x", "status": "delivered", "attempts": 2}
        ]

        assert ledger.record_notification(alice, deliveries, datetime.now(UTC)) is True
        assert ledger.record_notification(alice, deliveries, datetime.now(UTC)) is False

        events = ledger.subject_events(alice)
        assert kinds(events)[-3:] == ["KeysShredded", "ProcessorsNotified", "ErasureCompleted"]
        assert events[-2].deliveries == deliveries  # type: ignore[attr-defined]
        assert {e.request_event_id for e in events[-3:]} == {request.envelope.event_id}  # type: ignore[attr-defined]
