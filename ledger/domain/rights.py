"""Rectification (GDPR art. 16), restriction of processing (art. 18) and objection (art. 21),
as facts about a subject.

The facts are defined here and carried by :class:`~ledger.domain.subject.Subject`, whose
metaclass makes each a subclass of its own (``Subject.ProcessingRestricted``...): that
subclass is what is recorded, and its topic names the subject module. Rules:

- **A restriction** names a reference of the tenant's own (a case or ticket number, not
  personal), the grounds of art. 18(1) and the purposes it covers (none named: all of them).
  While it is in place, the purpose check refuses every purpose it covers except those the
  tenant catalogues as allowed under restriction (storage, legal claims). Only one restriction
  per reference is in place at a time; lifting one that is not in place is refused.
- **An objection** is to one purpose, and only to a purpose art. 21 lets a subject object to:
  one resting on legitimate interests or a public task, or one the tenant catalogues as direct
  marketing (whatever its basis). One resting on consent is ended by withdrawing the consent.
- **Compelling grounds** (art. 21(1)) are the tenant's reasoned answer to a standing
  objection; from then on the purpose is decided by its basis again. No grounds override an
  objection to direct marketing (art. 21(3)), and a new objection after grounds stands again.
- **A rectification** corrects one personal field of one of the subject's earlier events
  (:data:`RECTIFIABLE` lists which); the new value is sealed under the subject's key bound to
  the field it corrects, the event keeps the old ciphertext for audit, and every answer shows
  the latest value. Erasure makes old and new unreadable alike.
- **Recipients are told** (art. 19): a rectification, a restriction and its lifting are each
  followed, in the same save, by ``ChangeNoticeDue`` — the ledger's own fact naming the
  change and every recipient the subject's data was disclosed to, with the disclosures — from
  which the notifier plans its webhooks, as it does for an erasure.
- Nothing is recorded for a subject whose erasure was requested (``check_not_erased``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain.facts import Fact
from ledger.domain.rules import (
    FieldNotRectifiable,
    InvalidEvent,
    ObjectionAbsolute,
    ObjectionExists,
    ObjectionNotApplicable,
    ObjectionUnknown,
    RectificationTargetUnknown,
    RestrictionExists,
    RestrictionUnknown,
)
from ledger.domain.values import LegalBasis, Sealed

if TYPE_CHECKING:
    from ledger.domain.tenant import Purpose

# GDPR art. 18(1)(a)-(d), the Avro enum compliance.RestrictionGrounds.
RESTRICTION_GROUNDS = frozenset(
    {"ACCURACY_CONTESTED", "UNLAWFUL_PROCESSING", "LEGAL_CLAIMS", "OBJECTION_PENDING"}
)
OBJECTABLE_BASES = frozenset({LegalBasis.LEGITIMATE_INTERESTS, LegalBasis.PUBLIC_TASK})
# The personal fields a rectification may correct, by the kind of event holding them.
RECTIFIABLE: dict[str, frozenset[str]] = {
    "ConsentGranted": frozenset({"ip_address", "user_agent", "evidence"}),
    "ConsentWithdrawn": frozenset({"evidence"}),
    "PersonalDataCollected": frozenset({"description"}),
    "DataDisclosed": frozenset({"note"}),
}


@dataclass(frozen=True)
class Restriction:
    purposes: tuple[str, ...]  # empty: every purpose
    event_id: str
    at: datetime

    def covers(self, purpose: str) -> bool:
        return not self.purposes or purpose in self.purposes


@dataclass(frozen=True)
class Objection:
    event_id: str
    at: datetime
    overridden_by: str | None = None  # the CompellingGroundsRecorded event


class ProcessingRestricted(Fact):
    """Processing of the subject's data is restricted (art. 18) until the restriction with
    this reference is lifted."""

    restriction_reference: str
    grounds: str
    purposes: list[str]
    source: str
    note: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        restrictions: dict[str, Restriction] = aggregate.restrictions  # type: ignore[attr-defined]
        restrictions[self.restriction_reference] = Restriction(
            tuple(self.purposes), self.event_id, self.occurred_at
        )
        aggregate.answers[self.event_id] = "ProcessingRestricted"  # type: ignore[attr-defined]


class RestrictionLifted(Fact):
    restriction_reference: str
    source: str
    note: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        aggregate.restrictions.pop(self.restriction_reference, None)  # type: ignore[attr-defined]


class ObjectionRaised(Fact):
    """The subject objected to processing for a purpose (art. 21)."""

    purpose: str
    source: str
    reason: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        objections: dict[str, Objection] = aggregate.objections  # type: ignore[attr-defined]
        objections[self.purpose] = Objection(self.event_id, self.occurred_at)
        aggregate.answers[self.event_id] = "ObjectionRaised"  # type: ignore[attr-defined]


class CompellingGroundsRecorded(Fact):
    """The tenant's compelling legitimate grounds override the subject's objection to a
    purpose (art. 21(1)); ``reasoning`` says why, sealed like any personal field."""

    purpose: str
    grounds_reference: str
    reasoning: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        objections: dict[str, Objection] = aggregate.objections  # type: ignore[attr-defined]
        objections[self.purpose] = replace(objections[self.purpose], overridden_by=self.event_id)


class PersonalDataRectified(Fact):
    """A personal field of one of the subject's events is corrected (art. 16). ``value`` is
    sealed bound to ``field``, the field it replaces."""

    corrects_event_id: str
    field: str
    value: Sealed | None
    source: str
    reason: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        aggregate.answers[self.event_id] = "PersonalDataRectified"  # type: ignore[attr-defined]


class ChangeNoticeDue(Fact):
    """Recipients of the subject's data must be told of a change (art. 19): ``change`` is
    ``rectified``, ``restricted`` or ``restriction_lifted``, ``about_event_id`` the event that
    made it, ``disclosed_to`` each recipient with its disclosure event ids. Recorded by the
    ledger (producer ``ledger``) with the change, never sent by a producer."""

    about_event_id: str
    change: str
    disclosed_to: dict[str, list[str]]

    def apply(self, aggregate: Aggregate) -> None:
        pass


def check_rectification(kinds: dict[str, str], corrects_event_id: str, field: str) -> None:
    """``kinds``: the subject's events that hold correctable fields, by event id."""
    kind = kinds.get(corrects_event_id)
    if kind is None:
        raise RectificationTargetUnknown(
            f"the subject has no event {corrects_event_id!r} with personal fields to correct"
        )
    if field not in RECTIFIABLE[kind]:
        raise FieldNotRectifiable(
            f"{kind} {corrects_event_id!r} holds no personal field {field!r} to correct; "
            f"it holds {', '.join(sorted(RECTIFIABLE[kind]))}"
        )


def check_restriction(
    restrictions: dict[str, Restriction], reference: str, grounds: str, purposes: list[str]
) -> None:
    if grounds not in RESTRICTION_GROUNDS:
        raise InvalidEvent(f"grounds must be one of {', '.join(sorted(RESTRICTION_GROUNDS))}")
    if len(set(purposes)) != len(purposes):
        raise InvalidEvent("purposes must not repeat a purpose")
    if reference in restrictions:
        raise RestrictionExists(f"restriction {reference!r} is already in place")


def check_lift(restrictions: dict[str, Restriction], reference: str) -> None:
    if reference not in restrictions:
        raise RestrictionUnknown(f"no restriction {reference!r} is in place to lift")


def check_objection(
    objections: dict[str, Objection], purpose: str, basis: LegalBasis, direct_marketing: bool
) -> None:
    if not direct_marketing and basis not in OBJECTABLE_BASES:
        instead = "; withdraw the consent instead" if basis is LegalBasis.CONSENT else ""
        raise ObjectionNotApplicable(
            f"purpose {purpose!r} rests on {basis.value} and is not direct marketing: "
            f"art. 21 gives no right to object to it{instead}"
        )
    standing = objections.get(purpose)
    if standing is not None and standing.overridden_by is None:
        raise ObjectionExists(f"an objection to purpose {purpose!r} already stands")


def check_grounds(objections: dict[str, Objection], purpose: str, direct_marketing: bool) -> None:
    standing = objections.get(purpose)
    if standing is None or standing.overridden_by is not None:
        raise ObjectionUnknown(f"no objection to purpose {purpose!r} stands to answer")
    if direct_marketing:
        raise ObjectionAbsolute(
            f"purpose {purpose!r} is direct marketing: no grounds override an objection to it"
        )


class _Subject(Protocol):
    """What the commands below need of the subject they are mixed into."""

    tenant: str
    restrictions: dict[str, Restriction]
    objections: dict[str, Objection]
    correctable: dict[str, str]
    disclosed_to: dict[str, list[str]]
    # The aggregate's own subclasses of the facts above (its metaclass makes them, and their
    # stored topics name the aggregate: ``ledger.domain.subject:Subject.ProcessingRestricted``).
    ProcessingRestricted: type[Any]
    RestrictionLifted: type[Any]
    ObjectionRaised: type[Any]
    CompellingGroundsRecorded: type[Any]
    PersonalDataRectified: type[Any]
    ChangeNoticeDue: type[Any]

    def check_not_erased(self) -> None: ...

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None: ...


class RightsCommands:
    """The subject's commands for rectification, restriction and objection, mixed into
    :class:`~ledger.domain.subject.Subject`: each checks its rule, then records its fact."""

    def restrict_processing(
        self: _Subject,
        purposes: list[Purpose],
        *,
        restriction_reference: str,
        grounds: str,
        **fields: object,
    ) -> None:
        self.check_not_erased()
        codes = [p.code for p in purposes]
        check_restriction(self.restrictions, restriction_reference, grounds, codes)
        self.trigger_event(
            self.ProcessingRestricted,
            restriction_reference=restriction_reference,
            grounds=grounds,
            purposes=codes,
            **fields,
        )
        _notice_due(self, "restricted", fields)

    def lift_restriction(self: _Subject, *, restriction_reference: str, **fields: object) -> None:
        self.check_not_erased()
        check_lift(self.restrictions, restriction_reference)
        self.trigger_event(
            self.RestrictionLifted, restriction_reference=restriction_reference, **fields
        )
        _notice_due(self, "restriction_lifted", fields)

    def object_to(self: _Subject, purpose: Purpose, **fields: object) -> None:
        self.check_not_erased()
        check_objection(
            self.objections, purpose.code, purpose.legal_basis, purpose.direct_marketing
        )
        self.trigger_event(self.ObjectionRaised, purpose=purpose.code, **fields)

    def record_compelling_grounds(self: _Subject, purpose: Purpose, **fields: object) -> None:
        self.check_not_erased()
        check_grounds(self.objections, purpose.code, purpose.direct_marketing)
        self.trigger_event(self.CompellingGroundsRecorded, purpose=purpose.code, **fields)

    def rectify(self: _Subject, *, corrects_event_id: str, field: str, **fields: object) -> None:
        self.check_not_erased()
        check_rectification(self.correctable, corrects_event_id, field)
        self.trigger_event(
            self.PersonalDataRectified, corrects_event_id=corrects_event_id, field=field, **fields
        )
        _notice_due(self, "rectified", fields)


LEDGER_PRODUCER = "ledger"
_NOTICES = uuid5(NAMESPACE_URL, "urn:compliance-ledger:change-notice")


def _notice_due(subject: _Subject, change: str, fields: dict[str, object]) -> None:
    """``ChangeNoticeDue`` for the change just triggered (its envelope is ``fields``'): its
    event id derives from the change's, so a change is announced once."""
    about = str(fields["event_id"])
    subject.trigger_event(
        subject.ChangeNoticeDue,
        event_id=f"notice:{uuid5(_NOTICES, about)}",
        occurred_at=fields["occurred_at"],
        producer=LEDGER_PRODUCER,
        tenant=subject.tenant,
        about_event_id=about,
        change=change,
        disclosed_to={r: list(ids) for r, ids in sorted(subject.disclosed_to.items())},
    )
