"""The report's shipped JSON Schema, and its ledger event on the wire."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification

from consumers.relay import event_type
from ledger.application.service import Ledger
from ledger.domain.rules import UnknownSubject
from ledger.domain.subject import Subject
from ledger.wire import avro, contract
from projections.reports.schema import json_schema
from tests import builders as b

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_shipped_schema_is_the_generated_one() -> None:
    shipped = json.loads((DOCS / "subject-report.schema.json").read_text())
    assert shipped == json_schema(), "run: python -m projections.reports.schema > docs/..."


def test_a_report_is_recorded_after_erasure_and_published_on_the_ledger_topic() -> None:
    ledger = b.memory_ledger()
    ledger.register_tenant(b.TENANT, "Acme")
    ledger.record([b.define_purpose()])
    [granted, erased] = ledger.record([b.grant(b.REF), b.erase(b.REF)])
    assert (granted.status, erased.status) == ("recorded", "recorded")
    subject = granted.aggregate_id
    assert isinstance(subject, UUID)
    fields = {
        "event_id": "report-1",
        "occurred_at": b.OCCURRED_AT,
        "producer": "api:0123456789ab",
        "format": "pdf",
        "requested_by": "staff",
        "scope": "auditor",
        "sha256": "00" * 32,
        "size": 1234,
        "report_version": 1,
    }
    ledger.record_report(b.TENANT, subject, **fields)
    with pytest.raises(UnknownSubject):
        ledger.record_report("globex", subject, **fields)
    assert ledger.set_subject_reports(b.TENANT, allow=True)
    published = [_published(ledger, n) for n in ledger.store.select_notifications(1, 100)]
    kinds = [name for name, _ in published]
    assert kinds[-2:] == ["AccessReportGenerated", "SubjectReportPolicySet"]
    assert isinstance(ledger.subject_events(subject)[-1], Subject.AccessReportGenerated)


def _published(ledger: Ledger, notification: Notification) -> tuple[str, bytes]:
    """What the relay sends for a notification (its own mapping, without Kafka)."""
    name = event_type(notification.topic)
    record = contract.ledger_record(
        sequence=notification.id,
        event_type=name,
        aggregate_id=notification.originator_id,  # type: ignore[arg-type]
        aggregate_version=notification.originator_version,
        state=ledger.mapper.transcoder.decode(notification.state),
    )
    encoded = avro.encode("LedgerRecord", record)
    assert avro.decode(encoded)[1]["event_type"] == name
    return name, encoded
