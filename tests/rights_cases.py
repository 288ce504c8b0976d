"""Contract cases for restriction (art. 18) and objection (art. 21), run against every ledger
store (memory, PostgreSQL)."""

from __future__ import annotations

from ledger.application.service import Ledger
from ledger.domain.values import LegalBasis
from tests.builders import (
    REF,
    TENANT,
    collect,
    complete,
    define_purpose,
    disclose,
    erase,
    extend,
    grant,
    grounds,
    hold,
    lift,
    object_to,
    open_request,
    rectify,
    restrict,
    verify,
)
from tests.erasure_cases import events_of, kinds
from tests.ledger_cases import ready, reasons, statuses


def rights_ready(ledger: Ledger) -> Ledger:
    """The small catalogue, plus purposes one may object to, and a subject who consented."""
    ready(ledger)
    extra = [
        define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS),
        define_purpose("offers", "1", direct_marketing=True),
        define_purpose(
            "archive",
            "",
            text="",
            basis=LegalBasis.LEGAL_OBLIGATION,
            allowed_under_restriction=True,
        ),
        grant(REF),
    ]
    assert statuses(ledger.record(extra)) == ["recorded"] * 4
    return ledger


class RightsCases:
    def test_a_restriction_is_recorded_and_lifted_by_its_reference(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        assert statuses(ledger.record([restrict(REF, ["newsletter"], note="Alice says")])) == [
            "recorded"
        ]
        assert statuses(ledger.record([lift(REF)])) == ["recorded"]
        assert kinds(events_of(ledger, REF))[-4:] == [
            "ProcessingRestricted",
            "ChangeNoticeDue",
            "RestrictionLifted",
            "ChangeNoticeDue",
        ]

    def test_one_restriction_per_reference_and_only_those_in_place_are_lifted(
        self, ledger: Ledger
    ) -> None:
        rights_ready(ledger)
        ledger.record([restrict(REF)])
        assert reasons(ledger.record([restrict(REF)])) == ["restriction_exists"]
        assert reasons(ledger.record([lift(REF, "no-such-case")])) == ["restriction_unknown"]
        assert statuses(ledger.record([restrict(REF, reference="dispute-8")])) == ["recorded"]

    def test_a_restriction_names_only_catalogued_purposes(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        assert reasons(ledger.record([restrict(REF, ["nonesuch"])])) == ["unknown_purpose"]

    def test_rights_need_a_subject_the_ledger_knows(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        stranger = "bob@example.com"
        commands = [restrict(stranger), lift(stranger), object_to(stranger), grounds(stranger)]
        assert reasons(ledger.record(commands)) == ["unknown_subject"] * 4

    def test_an_erased_subject_cannot_be_restricted_or_object(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        ledger.record([erase(REF)])
        assert reasons(ledger.record([restrict(REF), object_to(REF)])) == ["subject_erased"] * 2

    def test_objection_only_where_article_21_allows_it(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        assert reasons(ledger.record([object_to(REF, "newsletter")])) == [
            "objection_not_applicable"
        ]
        assert reasons(ledger.record([object_to(REF, "billing")])) == ["objection_not_applicable"]
        assert statuses(ledger.record([object_to(REF, "analytics"), object_to(REF, "offers")])) == [
            "recorded",
            "recorded",
        ]
        assert reasons(ledger.record([object_to(REF, "analytics")])) == ["objection_exists"]

    def test_grounds_answer_a_standing_objection_except_to_direct_marketing(
        self, ledger: Ledger
    ) -> None:
        rights_ready(ledger)
        assert reasons(ledger.record([grounds(REF, "analytics")])) == ["objection_unknown"]
        ledger.record([object_to(REF, "analytics"), object_to(REF, "offers")])
        assert reasons(ledger.record([grounds(REF, "offers")])) == ["objection_absolute"]
        assert statuses(ledger.record([grounds(REF, "analytics")])) == ["recorded"]
        assert reasons(ledger.record([grounds(REF, "analytics")])) == ["objection_unknown"]
        # A new objection after the grounds stands again.
        assert statuses(ledger.record([object_to(REF, "analytics")])) == ["recorded"]

    def test_rights_events_hold_personal_values_only_sealed(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        ledger.record(
            [
                restrict(REF, note="Alice's address is wrong"),
                object_to(REF, reason="Alice does not want profiling"),
                grounds(REF, reasoning="Alice's account shows fraud"),
            ]
        )
        stored = repr(events_of(ledger, REF))
        for clear in ("Alice's address", "profiling", "fraud"):
            assert clear not in stored

    def test_a_rectification_corrects_a_field_of_one_of_the_subjects_events(
        self, ledger: Ledger
    ) -> None:
        rights_ready(ledger)
        ledger.record([collect(REF, event_id="c-1", description="12 Rose Lane")])
        corrected = rectify(REF, "c-1", "description", "14 Rose Lane", reason="typo")
        assert statuses(ledger.record([corrected])) == ["recorded"]
        fixed, notice = events_of(ledger, REF)[-2:]
        assert kinds([fixed, notice]) == ["PersonalDataRectified", "ChangeNoticeDue"]
        assert (notice.about_event_id, notice.change) == (fixed.event_id, "rectified")
        # Sealed bound to the field it corrects, so it opens as that field.
        subject = ledger.find_subject(TENANT, REF)
        assert subject is not None
        assert ledger.keys.open(subject.id, "description", fixed.value) == "14 Rose Lane"
        assert "14 Rose Lane" not in repr(fixed)

    def test_a_rectification_names_an_event_and_a_field_it_holds(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        granted = events_of(ledger, REF)[-1].event_id
        assert reasons(ledger.record([rectify(REF, "no-such-event")])) == [
            "rectification_target_unknown"
        ]
        assert reasons(ledger.record([rectify(REF, granted, "description")])) == [
            "field_not_rectifiable"
        ]
        assert statuses(ledger.record([rectify(REF, granted, "evidence", "form 12")])) == [
            "recorded"
        ]
        other = grant("bob@example.com", event_id="bobs")
        ledger.record([other])
        assert reasons(ledger.record([rectify(REF, "bobs", "evidence")])) == [
            "rectification_target_unknown"
        ]

    def test_a_request_is_opened_extended_and_completed_once(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        opened = open_request(REF, "RECTIFICATION", event_id="r-1", details="Alice's address")
        assert statuses(ledger.record([opened])) == ["recorded"]
        assert statuses(ledger.record([verify(REF, "r-1"), extend(REF, "r-1", 1)])) == [
            "recorded",
            "recorded",
        ]
        assert reasons(ledger.record([extend(REF, "r-1", 2)])) == ["extension_exceeded"]
        assert statuses(ledger.record([extend(REF, "r-1", 1)])) == ["recorded"]
        granted = events_of(ledger, REF)[2].event_id  # the grant: not a rectification
        assert reasons(ledger.record([complete(REF, "r-1", granted)])) == ["resolution_mismatch"]
        ledger.record([collect(REF, event_id="c-1"), rectify(REF, "c-1", event_id="fix-1")])
        assert statuses(ledger.record([complete(REF, "r-1", "fix-1")])) == ["recorded"]
        assert reasons(ledger.record([complete(REF, "r-1", "fix-1")])) == ["request_settled"]
        assert reasons(ledger.record([extend(REF, "r-1")])) == ["request_settled"]
        assert reasons(ledger.record([verify(REF, "r-9")])) == ["request_unknown"]

    def test_a_refusal_needs_a_reason_and_an_erasure_request_settles_itself(
        self, ledger: Ledger
    ) -> None:
        rights_ready(ledger)
        ledger.record([open_request(REF, "ACCESS", event_id="r-2")])
        bare = complete(REF, "r-2", outcome="REFUSED")
        assert reasons(ledger.record([bare])) == ["schema_invalid"]
        refused = complete(REF, "r-2", outcome="REFUSED", reason="Alice asked twice this week")
        assert statuses(ledger.record([refused])) == ["recorded"]
        ledger.record([hold(REF, "case-1"), erase(REF, event_id="erase-1")])  # refused: a hold
        assert reasons(ledger.record([complete(REF, "erase-1", "x")])) == [
            "request_completed_by_erasure"
        ]
        assert reasons(ledger.record([extend(REF, "erase-1")])) == ["request_settled"]

    def test_someone_the_tenant_holds_nothing_on_may_still_ask(self, ledger: Ledger) -> None:
        rights_ready(ledger)
        stranger = "erin@example.net"
        assert statuses(ledger.record([open_request(stranger, "ACCESS")])) == ["recorded"]
        assert reasons(ledger.record([extend(stranger, "nope")])) == ["request_unknown"]

    def test_recipients_of_the_subjects_data_are_named_in_each_change_notice(
        self, ledger: Ledger
    ) -> None:
        rights_ready(ledger)
        ledger.record(
            [
                disclose(REF, recipient="mailer-inc", event_id="d-1"),
                disclose(REF, recipient="mailer-inc", event_id="d-2"),
                disclose(REF, "billing", LegalBasis.CONTRACT, "d-3", recipient="bank"),
                restrict(REF, event_id="restriction-1"),
            ]
        )
        notice = events_of(ledger, REF)[-1]
        assert kinds([notice]) == ["ChangeNoticeDue"]
        assert notice.producer == "ledger" and notice.about_event_id == "restriction-1"
        assert notice.disclosed_to == {"bank": ["d-3"], "mailer-inc": ["d-1", "d-2"]}
        again = ledger.record([restrict(REF, event_id="restriction-1")])
        assert statuses(again) == ["duplicate"]  # a change is announced once

    def test_every_rights_fact_is_stored_under_the_subjects_own_topic(self, ledger: Ledger) -> None:
        """Stored topics name classes: they must be the aggregate's (as every other fact's),
        which the views key their handlers by, and must never move."""
        rights_ready(ledger)
        ledger.record(
            [
                collect(REF, event_id="c-1"),
                rectify(REF, "c-1"),
                restrict(REF),
                lift(REF),
                object_to(REF),
                grounds(REF),
                open_request(REF, event_id="r-1"),
                verify(REF, "r-1"),
                extend(REF, "r-1"),
            ]
        )
        topics = {n.topic for n in ledger.store.select_notifications(1, 1000)}
        facts = (
            "PersonalDataRectified",
            "ProcessingRestricted",
            "RestrictionLifted",
            "ObjectionRaised",
            "CompellingGroundsRecorded",
            "RequestOpened",
            "RequestIdentityVerified",
            "RequestExtended",
            "ChangeNoticeDue",
        )
        assert {f"ledger.domain.subject:Subject.{name}" for name in facts} <= topics
        modules = {t.split(":")[0] for t in topics}
        assert modules == {"ledger.domain.subject", "ledger.domain.tenant"}
