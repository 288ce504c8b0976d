"""What a notice is: the targets of one ``KeysShredded`` (an erasure) or ``ChangeNoticeDue``
(a rectification, a restriction or its lifting: GDPR art. 19), and the body each is sent.

No I/O here. Rules:

- **Targets.** Every recipient in ``disclosed_to`` (its data went there), plus every enabled
  ``processor`` endpoint of the tenant. A recipient with no enabled endpoint is a target with
  status ``no_endpoint``: people must tell it by other means. A name that is both a recipient
  and a processor is one target.
- **Delivery id** = UUIDv5 of (tenant, request event id, target name): deterministic, so every
  attempt, restart and re-consumption sends the same ``webhook-id``.
- **Body** (JSON, the Standard Webhooks ``{type, timestamp, data}`` shape) holds the event
  type (``subject.erased``, or for a change ``subject.rectified``, ``subject.restricted``,
  ``subject.restriction_lifted``), the tenant, the pseudonymous subject id, the request (the
  change's) and disclosure event ids, the times and the ledger sequence — nothing personal.
  It is built once and sent byte for byte the same on every attempt.
- **Only an erasure has a ledger step after its deliveries** (``ProcessorsNotified``,
  ``ErasureCompleted``); a change notice is done when its deliveries are settled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

EVENT_TYPE = "subject.erased"
CHANGES = {
    "rectified": "subject.rectified",
    "restricted": "subject.restricted",
    "restriction_lifted": "subject.restriction_lifted",
}
RECIPIENT = "recipient"
PROCESSOR = "processor"
KINDS = (RECIPIENT, PROCESSOR)
_DELIVERIES = uuid5(NAMESPACE_URL, "urn:compliance-ledger:erasure-webhook")


class NotAnErasure(ValueError):
    """A ledger record that is not a ``KeysShredded`` was taken for one."""


@dataclass(frozen=True)
class Erasure:
    """A carried-out erasure as the ledger topic tells it (``compliance.KeysShredded``)."""

    tenant: str
    subject_id: UUID
    request_event_id: str
    sequence: int
    requested_at: datetime
    erased_at: datetime
    disclosed_to: Mapping[str, tuple[str, ...]]
    notice_type: str = EVENT_TYPE  # or one of CHANGES' for a change notice

    @property
    def is_erasure(self) -> bool:
        return self.notice_type == EVENT_TYPE

    @classmethod
    def from_change_record(cls, record: Mapping[str, Any]) -> Erasure:
        """From a decoded ``compliance.LedgerRecord`` whose event is ``ChangeNoticeDue``: the
        change's event id stands for the request, its times for the request's and erasure's."""
        name, body = record["event"]
        if record["event_type"] != "ChangeNoticeDue" or name != "compliance.ChangeNoticeDue":
            raise NotAnErasure(f"record {record['sequence']} is a {record['event_type']}")
        return cls(
            tenant=record["tenant"],
            subject_id=UUID(record["aggregate_id"]),
            request_event_id=body["about_event_id"],
            sequence=record["sequence"],
            requested_at=body["envelope"]["occurred_at"],
            erased_at=record["recorded_at"],
            disclosed_to={r: tuple(ids) for r, ids in body["disclosed_to"].items()},
            notice_type=CHANGES[body["change"]],
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Erasure:
        """From a decoded ``compliance.LedgerRecord`` whose event is ``KeysShredded``."""
        name, body = record["event"]
        if record["event_type"] != "KeysShredded" or name != "compliance.KeysShredded":
            raise NotAnErasure(f"record {record['sequence']} is a {record['event_type']}")
        return cls(
            tenant=record["tenant"],
            subject_id=UUID(record["aggregate_id"]),
            request_event_id=body["request_event_id"],
            sequence=record["sequence"],
            requested_at=body["envelope"]["occurred_at"],
            erased_at=record["recorded_at"],  # the keys went in the transaction recording it
            disclosed_to={r: tuple(ids) for r, ids in body["disclosed_to"].items()},
        )


@dataclass(frozen=True)
class Planned:
    delivery_id: UUID
    recipient: str
    status: Literal["pending", "no_endpoint"]
    body: str


def delivery_id(tenant: str, request_event_id: str, name: str) -> UUID:
    return uuid5(_DELIVERIES, "\x00".join((tenant, request_event_id, name)))


def plan(erasure: Erasure, endpoints: Mapping[str, str]) -> list[Planned]:
    """The deliveries of an erasure; ``endpoints`` maps the tenant's *enabled* endpoint names
    to their kind (``recipient`` or ``processor``). Sorted by target name."""
    reachable = {name: name in endpoints for name in erasure.disclosed_to}
    reachable.update({name: True for name, kind in endpoints.items() if kind == PROCESSOR})
    planned = []
    for name, has_endpoint in sorted(reachable.items()):
        did = delivery_id(erasure.tenant, erasure.request_event_id, name)
        status: Literal["pending", "no_endpoint"] = "pending" if has_endpoint else "no_endpoint"
        planned.append(Planned(did, name, status, body(erasure, name, did)))
    return planned


def body(erasure: Erasure, recipient: str, did: UUID) -> str:
    data: dict[str, object] = {
        "delivery_id": str(did),
        "tenant": erasure.tenant,
        "subject_id": str(erasure.subject_id),
    }
    if erasure.is_erasure:
        data["request_event_id"] = erasure.request_event_id
        data["requested_at"] = _iso(erasure.requested_at)
        data["erased_at"] = _iso(erasure.erased_at)
    else:
        data["event_id"] = erasure.request_event_id
        data["changed_at"] = _iso(erasure.requested_at)
        data["recorded_at"] = _iso(erasure.erased_at)
    data["recipient"] = recipient
    data["disclosure_event_ids"] = list(erasure.disclosed_to.get(recipient, ()))
    data["ledger_sequence"] = erasure.sequence
    notice = {"type": erasure.notice_type, "timestamp": _iso(erasure.erased_at), "data": data}
    return json.dumps(notice, separators=(",", ":"), ensure_ascii=False)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
