"""The register of data subject requests (GDPR art. 12(3)), as facts about a subject.

Every request a subject makes is tracked from its arrival to its answer. Rules:

- **Opened** (``RequestOpened``) with its kind, the channel it came through and whether the
  requester's identity is verified; it is due one month after it arrived (``occurred_at``).
  An erasure request is opened by ``ErasureRequested`` itself and settled by the erasure
  workflow (``ErasureCompleted``, or ``ErasureRefused`` under a legal hold): one mechanism,
  listed in the same register.
- **Extended** (``RequestExtended``) by one or two months with a recorded reason, at most two
  in all (art. 12(3)); never once settled.
- **Completed** (``RequestCompleted``) once: ``FULFILLED`` names the subject's event that
  answered it — an ``AccessReportGenerated`` for access and portability, a
  ``PersonalDataRectified`` for rectification, a ``ProcessingRestricted`` for restriction, an
  ``ObjectionRaised`` for objection — or ``REFUSED`` with the reason (sealed: it may speak of
  the subject).
- **An erasure closes the rest.** When the subject's keys are shredded, its other open
  requests are settled: nothing is left to answer them with (the register shows them
  ``closed``, ``subject_erased``).
- Verifying, extending and completing are the controller's accountability records and carry
  nothing personal but a refusal's reason: the aggregate accepts them while an erasure request
  is pending too (an erasure request refused under a legal hold can still be extended).
  Opening a new request is refused then, like any other fact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from eventsourcing.domain import Aggregate

from ledger.domain.facts import Fact
from ledger.domain.rules import (
    ExtensionExceeded,
    InvalidEvent,
    RequestCompletedByErasure,
    RequestSettled,
    RequestUnknown,
    ResolutionMismatch,
)
from ledger.domain.values import Sealed

# The Avro enum compliance.RequestKind; an erasure request is an ErasureRequested.
REQUEST_KINDS = frozenset({"ACCESS", "PORTABILITY", "RECTIFICATION", "RESTRICTION", "OBJECTION"})
OUTCOMES = frozenset({"FULFILLED", "REFUSED"})
MAX_EXTENSION_MONTHS = 2
# The kind of event that answers each kind of request.
ANSWERED_BY = {
    "ACCESS": "AccessReportGenerated",
    "PORTABILITY": "AccessReportGenerated",
    "RECTIFICATION": "PersonalDataRectified",
    "RESTRICTION": "ProcessingRestricted",
    "OBJECTION": "ObjectionRaised",
}


@dataclass(frozen=True)
class Request:
    kind: str  # one of REQUEST_KINDS, or "ERASURE"
    received_at: datetime
    extended_months: int = 0
    settled: bool = False


def _requests(aggregate: Aggregate) -> dict[str, Request]:
    found: dict[str, Request] = aggregate.requests  # type: ignore[attr-defined]
    return found


class RequestOpened(Fact):
    """A subject's request arrived (art. 15-21); the event id is the request's id."""

    kind: str
    channel: str
    identity_verified: bool
    details: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        _requests(aggregate)[self.event_id] = Request(self.kind, self.occurred_at)


class RequestIdentityVerified(Fact):
    request_id: str
    method: str

    def apply(self, aggregate: Aggregate) -> None:
        pass


class RequestExtended(Fact):
    """The deadline moves by ``months`` (art. 12(3): by two at most, with the reasons)."""

    request_id: str
    months: int
    extension_reason: str

    def apply(self, aggregate: Aggregate) -> None:
        requests = _requests(aggregate)
        held = requests[self.request_id]
        requests[self.request_id] = replace(
            held, extended_months=held.extended_months + self.months
        )


class RequestCompleted(Fact):
    request_id: str
    outcome: str
    resolved_by_event_id: str
    reason: Sealed | None

    def apply(self, aggregate: Aggregate) -> None:
        requests = _requests(aggregate)
        requests[self.request_id] = replace(requests[self.request_id], settled=True)


def check_open(kind: str) -> None:
    if kind not in REQUEST_KINDS:
        raise InvalidEvent(
            f"kind must be one of {', '.join(sorted(REQUEST_KINDS))} "
            "(an erasure request is an ErasureRequested)"
        )


def check_pending(requests: dict[str, Request], request_id: str) -> Request:
    request = requests.get(request_id)
    if request is None:
        raise RequestUnknown(f"the subject has no request {request_id!r}")
    if request.settled:
        raise RequestSettled(f"request {request_id!r} is already settled")
    return request


def check_extension(requests: dict[str, Request], request_id: str, months: int) -> None:
    request = check_pending(requests, request_id)
    if months < 1 or request.extended_months + months > MAX_EXTENSION_MONTHS:
        raise ExtensionExceeded(
            f"request {request_id!r} is extended by {request.extended_months} month(s); "
            f"at most {MAX_EXTENSION_MONTHS} in all (GDPR art. 12(3))"
        )


def check_completion(
    requests: dict[str, Request],
    answers: dict[str, str],
    request_id: str,
    outcome: str,
    resolved_by_event_id: str,
    has_reason: bool,
) -> None:
    """``answers``: the subject's events that may answer a request, by event id → kind."""
    held = requests.get(request_id)
    if held is not None and held.kind == "ERASURE":
        raise RequestCompletedByErasure(
            f"request {request_id!r} is an erasure request: the erasure workflow settles it"
        )
    request = check_pending(requests, request_id)
    if outcome not in OUTCOMES:
        raise InvalidEvent(f"outcome must be one of {', '.join(sorted(OUTCOMES))}")
    if outcome == "REFUSED":
        if not has_reason or resolved_by_event_id:
            raise InvalidEvent("a REFUSED request needs a reason and names no resolving event")
        return
    expected = ANSWERED_BY[request.kind]
    if answers.get(resolved_by_event_id) != expected:
        raise ResolutionMismatch(
            f"a {request.kind} request is answered by one of the subject's {expected} events; "
            f"{resolved_by_event_id!r} is not one"
        )


class _Subject(Protocol):
    """What the commands below need of the subject they are mixed into."""

    requests: dict[str, Request]
    answers: dict[str, str]
    # The aggregate's own subclasses of the facts above (see ``ledger.domain.rights``).
    RequestOpened: type[Any]
    RequestIdentityVerified: type[Any]
    RequestExtended: type[Any]
    RequestCompleted: type[Any]

    def check_not_erased(self) -> None: ...

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None: ...


class RequestCommands:
    """The subject's commands for the register, mixed into
    :class:`~ledger.domain.subject.Subject`. Verifying, extending and completing are
    accountability records, so they do not check for an erasure request."""

    def open_request(self: _Subject, *, kind: str, **fields: object) -> None:
        self.check_not_erased()
        check_open(kind)
        self.trigger_event(self.RequestOpened, kind=kind, **fields)

    def verify_request(self: _Subject, *, request_id: str, **fields: object) -> None:
        check_pending(self.requests, request_id)
        self.trigger_event(self.RequestIdentityVerified, request_id=request_id, **fields)

    def extend_request(self: _Subject, *, request_id: str, months: int, **fields: object) -> None:
        check_extension(self.requests, request_id, months)
        self.trigger_event(self.RequestExtended, request_id=request_id, months=months, **fields)

    def complete_request(
        self: _Subject,
        *,
        request_id: str,
        outcome: str,
        resolved_by_event_id: str,
        reason: Sealed | None,
        **fields: object,
    ) -> None:
        check_completion(
            self.requests, self.answers, request_id, outcome, resolved_by_event_id, bool(reason)
        )
        self.trigger_event(
            self.RequestCompleted,
            request_id=request_id,
            outcome=outcome,
            resolved_by_event_id=resolved_by_event_id,
            reason=reason,
            **fields,
        )

    def settle(self: _Subject, request_id: str) -> None:
        """Marks a request settled (by the erasure workflow's own events)."""
        held = self.requests.get(request_id)
        if held is not None:
            self.requests[request_id] = replace(held, settled=True)
