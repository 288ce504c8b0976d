"""Erasure → relay → ledger topic → notifier → signed webhooks → the workflow's last steps,
with a real PostgreSQL, a real broker and local HTTP receivers that verify every signature
with the ``standardwebhooks`` library and the secret ``ledger webhooks add`` printed."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from consumers.notifier import Notifier, close_notifier, open_notifier
from consumers.relay import Relay
from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.domain.subject import Subject
from ledger.domain.values import LegalBasis
from ledger.kafka.producer import make_producer
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.webhooks import listing
from tests import builders as b
from tests.kafka_helpers import read_topic, wait_until
from tests.webhook_receivers import Receivers, receivers

__all__ = ["receivers"]  # fixture
PERSONAL = (b.REF, b.IP, "sent by courier", "moving abroad")


def cli(environ: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=environ)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    app_ = open_ledger(settings)
    app_.register_tenant(b.TENANT, "Acme")
    yield app_
    app_.close()


def erase_a_subject_with_disclosures(ledger: Ledger) -> tuple[uuid.UUID, str]:
    ledger.record([b.define_purpose(), b.define_purpose("billing", basis=LegalBasis.CONTRACT)])
    ledger.record(
        [
            b.grant(b.REF),
            b.disclose(b.REF, event_id="d-mailer", recipient="mailer-inc", note=PERSONAL[2]),
            b.disclose(b.REF, "billing", LegalBasis.CONTRACT, "d-bank", recipient="old-bank"),
            b.disclose(b.REF, "billing", LegalBasis.CONTRACT, "d-post", recipient="courier-co"),
        ]
    )
    subject = ledger.find_subject(b.TENANT, b.REF)
    assert subject is not None
    request = b.erase(b.REF, reason=PERSONAL[3])
    assert [o.status for o in ledger.record([request])] == ["recorded"]
    return subject.id, request.envelope.event_id


def relay_everything(ledger: Ledger, settings: Settings) -> None:
    producer = make_producer(settings.require_kafka())
    relay = Relay(ledger, producer, settings.topics.ledger)
    while relay.publish_once():
        pass
    producer.close()


@pytest.fixture
def notifier(settings: Settings) -> Iterator[tuple[Notifier, Ledger]]:
    fast = settings.with_overrides(
        notifier_group=f"notifier-{uuid.uuid4().hex[:12]}",
        webhook_retry_base=timedelta(milliseconds=100),
        webhook_retry_max=timedelta(milliseconds=200),
        webhook_timeout=timedelta(seconds=5),
    )
    own_ledger = open_ledger(fast)  # as its own process would
    process = open_notifier(fast, own_ledger)
    process.dispatcher.idle_s = 0.05
    yield process, own_ledger
    close_notifier(process)
    own_ledger.close()


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_an_erasure_is_signed_retried_delivered_and_recorded_once(
    ledger: Ledger,
    settings: Settings,
    settings_environ: dict[str, str],
    receivers: tuple[Receivers, str],
    notifier: tuple[Notifier, Ledger],
    capsys: pytest.CaptureFixture[str],
) -> None:
    inbox, base = receivers
    for name, path, extra in [
        ("mailer-inc", "mailer", ()),
        ("old-bank", "bank", ()),
        ("payroll-co", "payroll", ("--processor",)),
    ]:
        printed = cli(settings_environ, "webhooks", "add", b.TENANT, name, f"{base}/{path}", *extra)
        inbox.secrets[path] = printed.strip()
    inbox.fail_first.add("bank")
    subject_id, request_id = erase_a_subject_with_disclosures(ledger)
    relay_everything(ledger, settings)

    process, _ = notifier
    stop = threading.Event()
    running = threading.Thread(target=process.run, args=(stop,))
    running.start()
    try:
        wait_until(
            lambda: kinds(ledger.subject_events(subject_id))[-1] == "ErasureCompleted",
            timeout=60,
            what="the erasure to complete",
        )
    finally:
        stop.set()
        running.join(timeout=30)

    # Every request was signed with the endpoint's secret; the bank's failed once, then was
    # retried with the same delivery id and body.
    assert all(r.verified for r in inbox.received)
    assert [len(inbox.at(p)) for p in ("mailer", "bank", "payroll")] == [1, 2, 1]
    first, retry = inbox.at("bank")
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert first.body == retry.body

    # The ledger holds the workflow's last steps, with one delivery per target.
    events = ledger.subject_events(subject_id)
    assert kinds(events)[-4:] == [
        "ErasureRequested",
        "KeysShredded",
        "ProcessorsNotified",
        "ErasureCompleted",
    ]
    notified = events[-2]
    assert isinstance(notified, Subject.ProcessorsNotified)
    assert notified.request_event_id == request_id
    ids = {p: inbox.at(p)[0].headers["webhook-id"] for p in ("mailer", "bank", "payroll")}
    assert notified.deliveries == [
        {
            "recipient": "courier-co",
            "delivery_id": notified.deliveries[0]["delivery_id"],
            "status": "no_endpoint",
            "attempts": 0,
            "last_status_code": None,
        },
        delivered("mailer-inc", ids["mailer"], attempts=1),
        delivered("old-bank", ids["bank"], attempts=2),
        delivered("payroll-co", ids["payroll"], attempts=1),
    ]

    # What the receivers got names the erasure by ids only.
    for received in inbox.received:
        assert not any(value.encode() in received.body for value in PERSONAL)
    mailer = json.loads(inbox.at("mailer")[0].body)
    assert mailer["type"] == "subject.erased"
    assert mailer["data"]["subject_id"] == str(subject_id)
    assert mailer["data"]["request_event_id"] == request_id
    assert mailer["data"]["disclosure_event_ids"] == ["d-mailer"]
    assert json.loads(inbox.at("payroll")[0].body)["data"]["disclosure_event_ids"] == []

    # Every attempt is on record: the bank's two, with their answers.
    with psycopg.connect(settings.require_database()) as conn:
        attempts = listing.attempts(conn, settings.database_schema, uuid.UUID(ids["bank"]))
    assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500), (2, 200)]
    assert all(a.duration_ms is not None for a in attempts)

    shown = cli(settings_environ, "webhooks", "deliveries", "--tenant", b.TENANT)
    assert "no_endpoint" in shown and ids["bank"] in shown
    tried = cli(settings_environ, "webhooks", "attempts", ids["bank"]).splitlines()
    assert [line.split("\t")[2] for line in tried[1:]] == ["500", "200"]
    assert not any(value in capsys.readouterr().err for value in PERSONAL)


def delivered(recipient: str, delivery_id: str, *, attempts: int) -> dict[str, object]:
    return {
        "recipient": recipient,
        "delivery_id": delivery_id,
        "status": "delivered",
        "attempts": attempts,
        "last_status_code": 200,
    }


def test_a_replayed_topic_or_a_crash_before_marking_sends_and_records_nothing_twice(
    ledger: Ledger,
    settings: Settings,
    settings_environ: dict[str, str],
    receivers: tuple[Receivers, str],
    notifier: tuple[Notifier, Ledger],
) -> None:
    inbox, base = receivers
    inbox.secrets["mailer"] = cli(
        settings_environ, "webhooks", "add", b.TENANT, "mailer-inc", f"{base}/mailer"
    ).strip()
    subject_id, _ = erase_a_subject_with_disclosures(ledger)
    relay_everything(ledger, settings)
    process, _ = notifier
    total = len(ledger.store.select_notifications(1, 1000))
    records = read_topic(
        settings.require_kafka(), settings.topics.ledger, until=lambda r: len(r) >= total
    )

    assert process.plan(records + records) == 1  # a republished record plans nothing more
    while process.dispatcher.step():
        pass
    assert process.plan(records) == 0
    events = len(ledger.subject_events(subject_id))
    assert kinds(ledger.subject_events(subject_id))[-1] == "ErasureCompleted"

    # The process died after the ledger recorded the steps but before marking the request.
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        conn.execute(f"UPDATE {settings.database_schema}.webhook_requests SET recorded_at = NULL")
    assert process.dispatcher.finalize_one() is True
    assert process.dispatcher.step() is False
    assert len(ledger.subject_events(subject_id)) == events
    assert len(inbox.at("mailer")) == 1

    # The last two steps reach the ledger topic too, and the notifier passes over them.
    relay_everything(ledger, settings)
    published = read_topic(
        settings.require_kafka(), settings.topics.ledger, until=lambda r: len(r) >= total + 2
    )
    later = [r for r in published if int(dict(r.headers)["sequence"]) > total]
    steps = [dict(r.headers)["event_type"] for r in later]
    assert sorted(steps) == [b"ErasureCompleted", b"ProcessorsNotified"]
    assert process.plan(published) == 0


def test_a_restriction_and_a_correction_are_told_to_every_recipient_and_processor(
    ledger: Ledger,
    settings: Settings,
    settings_environ: dict[str, str],
    receivers: tuple[Receivers, str],
    notifier: tuple[Notifier, Ledger],
) -> None:
    """GDPR art. 19: a change to the subject's data reaches whoever received it, signed, with
    nothing personal; the ledger records no further step for it."""
    inbox, base = receivers
    for name, path, extra in [
        ("mailer-inc", "mailer", ()),
        ("payroll-co", "payroll", ("--processor",)),
    ]:
        printed = cli(settings_environ, "webhooks", "add", b.TENANT, name, f"{base}/{path}", *extra)
        inbox.secrets[path] = printed.strip()
    ledger.record([b.define_purpose()])
    correction = "Alice's corrected note, to alice@new.example"
    ledger.record(
        [
            b.grant(b.REF),
            b.disclose(b.REF, event_id="d-mailer", recipient="mailer-inc", note=PERSONAL[2]),
            b.restrict(b.REF, event_id="restriction-1"),
            b.rectify(b.REF, "d-mailer", "note", correction, event_id="fix-1"),
        ]
    )
    relay_everything(ledger, settings)

    process, _ = notifier
    stop = threading.Event()
    running = threading.Thread(target=process.run, args=(stop,))
    running.start()
    try:
        wait_until(
            lambda: len(inbox.at("mailer")) == 2 and len(inbox.at("payroll")) == 2,
            timeout=60,
            what="both change notices delivered to both targets",
        )
    finally:
        stop.set()
        running.join(timeout=30)
    assert all(r.verified for r in inbox.received)
    bodies = sorted((json.loads(r.body) for r in inbox.at("mailer")), key=lambda n: n["type"])
    assert [n["type"] for n in bodies] == ["subject.rectified", "subject.restricted"]
    assert [n["data"]["event_id"] for n in bodies] == ["fix-1", "restriction-1"]
    assert bodies[0]["data"]["disclosure_event_ids"] == ["d-mailer"]
    for received in inbox.received:
        for value in (*PERSONAL, correction):
            assert value.encode() not in received.body
    subject = ledger.find_subject(b.TENANT, b.REF)
    assert subject is not None
    assert "ProcessorsNotified" not in kinds(ledger.subject_events(subject.id))
