"""The projections over a scripted history, on a real PostgreSQL: answers, retention, rebuild."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Tracking
from psycopg.rows import dict_row

from ledger.application import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.runtime import open_ledger, open_reader
from ledger.settings import Settings
from projections.catalog import VIEWS, live_schema, open_view
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests import builders as b

NOW = datetime.now(UTC)
ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.org", "carol@example.net", "dave@x.io"


def days_ago(n: int) -> datetime:
    return NOW - timedelta(days=n)


@pytest.fixture
def ledger(settings_db_only: Settings) -> Iterator[Ledger]:
    app = open_ledger(settings_db_only)
    app.register_tenant(b.TENANT, "Acme")
    app.register_tenant("globex", "Globex")
    yield app
    app.close()


@pytest.fixture
def reader(settings_db_only: Settings) -> Iterator[LedgerReader]:
    app = open_reader(settings_db_only)
    yield app
    app.close()


def catch_up(settings: Settings, reader: LedgerReader, *, sweep: bool = False) -> None:
    """Every view up to the ledger's head; with ``sweep``, then the retention sweep the live
    runner runs on start and every few minutes."""
    head = reader.recorder.max_notification_id() or 0
    for name in VIEWS:
        view = open_view(settings, name)
        try:
            ProjectionRunner(reader, view).follow(threading.Event(), until=head)
            if sweep:
                view.maintain()
        finally:
            view.datastore.close()


def rows(settings: Settings, table: str, order: str = "1") -> list[dict[str, Any]]:
    view, name = table.split(".")
    with psycopg.connect(settings.require_database(), row_factory=dict_row) as conn:
        return conn.execute(
            f"SELECT * FROM {live_schema(settings, view)}.{name} ORDER BY {order}"
        ).fetchall()


def snapshot(settings: Settings, only: str = "") -> dict[str, list[dict[str, Any]]]:
    tables = {
        "consent.purposes": "tenant, purpose",
        "consent.subjects": "subject_id",
        "consent.consents": "subject_id, purpose",
        "records.disclosures": "tenant, event_id",
        "records.collections": "tenant, event_id",
        "erasure.subject_keys": "subject_id",
        "erasure.erasure_requests": "tenant, event_id",
    }
    return {t: rows(settings, t, order) for t, order in tables.items() if t.startswith(only)}


def record(ledger: Ledger, *commands: Any) -> list[str]:
    return [o.status for o in ledger.record(list(commands))]


def scripted_history(ledger: Ledger) -> dict[str, str]:
    """Returns the event ids the assertions refer to."""
    ids = {k: f"{k}-event" for k in ("regrant", "bob_withdraw", "erase")}
    record(
        ledger,
        b.define_purpose("terms", required=True, text="Terms v1"),
        b.define_purpose("newsletter", "1", text="Newsletter v1"),
        b.define_purpose("newsletter", "2", text="Newsletter v2"),
        b.define_purpose("billing", basis=LegalBasis.CONTRACT, text="Billing"),
    )
    assert (
        record(
            ledger,
            b.at(b.grant(ALICE, "terms"), days_ago(500)),
            b.at(b.grant(ALICE, "newsletter", "1"), days_ago(500)),
            b.at(b.withdraw(ALICE, "newsletter"), days_ago(450)),
            b.at(b.grant(ALICE, "newsletter", "2", event_id=ids["regrant"]), days_ago(20)),
            b.at(b.withdraw(ALICE, "terms"), days_ago(10)),  # required: refused
            b.at(b.grant(BOB, "newsletter"), days_ago(30)),
            b.at(b.withdraw(BOB, "newsletter", event_id=ids["bob_withdraw"]), days_ago(5)),
        )
        == ["recorded"] * 4 + ["rejected"] + ["recorded"] * 2
    )
    assert (
        record(
            ledger,
            b.at(
                b.disclose(ALICE, "billing", LegalBasis.CONTRACT, recipient="old-bank"),
                days_ago(400),
            ),
            b.at(b.disclose(ALICE, "newsletter", recipient="mailer-inc"), days_ago(15)),
            b.at(b.collect(CAROL, "billing", categories=["contact.postal"]), days_ago(380)),
            b.at(
                b.disclose(CAROL, "billing", LegalBasis.CONTRACT, categories=["contact.postal"]),
                days_ago(10),
            ),
            b.at(b.collect(CAROL, "billing", categories=["contact.phone"]), days_ago(370)),
            b.at(
                b.disclose(CAROL, "billing", LegalBasis.CONTRACT, categories=["contact.phone"]),
                days_ago(100),
            ),
            b.at(b.grant(DAVE, "newsletter"), days_ago(3)),
            b.at(b.erase(DAVE, event_id=ids["erase"]), days_ago(1)),
            b.at(b.grant(DAVE, "terms"), days_ago(0)),  # after erasure: refused
            b.grant("frank@globex.example", "newsletter", tenant="globex"),  # no such purpose
        )
        == ["recorded"] * 8 + ["rejected"] * 2
    )
    return ids


def subject_id(ledger: Ledger, ref: str) -> Any:
    found = ledger.find_subject(b.TENANT, ref)
    assert found is not None
    return found.id


def test_consent_state_follows_grants_regrants_and_withdrawals(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    ids = scripted_history(ledger)
    catch_up(settings_db_only, reader)
    consents = {
        (r["subject_id"], r["purpose"]): r for r in rows(settings_db_only, "consent.consents")
    }
    alice, bob = subject_id(ledger, ALICE), subject_id(ledger, BOB)

    regranted = consents[(alice, "newsletter")]
    assert regranted["state"] == "granted"
    assert regranted["consent_text_version"] == "2"
    assert regranted["event_id"] == ids["regrant"]
    assert regranted["first_granted_at"] == days_ago(20)  # a new streak after the withdrawal
    assert consents[(alice, "terms")]["state"] == "granted"  # the refused withdrawal left it
    withdrawn = consents[(bob, "newsletter")]
    assert (withdrawn["state"], withdrawn["event_id"]) == ("withdrawn", ids["bob_withdraw"])
    assert withdrawn["changed_at"] == days_ago(5)
    assert (alice, "billing") not in consents  # never granted
    purposes = {r["purpose"]: r for r in rows(settings_db_only, "consent.purposes")}
    assert purposes["newsletter"]["current_version"] == "2"
    assert purposes["newsletter"]["texts"] == {"1": "Newsletter v1", "2": "Newsletter v2"}
    assert purposes["terms"]["required"] is True
    assert purposes["billing"]["legal_basis"] == "CONTRACT"


def test_personal_columns_hold_only_ciphertext(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    scripted_history(ledger)
    catch_up(settings_db_only, reader)
    dumped = repr(snapshot(settings_db_only)).encode()
    for value in (ALICE, BOB, CAROL, b.IP, b.USER_AGENT):
        assert value.encode() not in dumped


def test_records_keep_one_year_from_last_use(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    scripted_history(ledger)
    catch_up(settings_db_only, reader)
    view = open_view(settings_db_only, "records")
    try:
        removed = view.maintain()
    finally:
        view.datastore.close()
    disclosures = rows(settings_db_only, "records.disclosures", "disclosed_at")
    assert [
        d["recipient"] for d in disclosures if d["subject_id"] == subject_id(ledger, ALICE)
    ] == ["mailer-inc"]  # the 400-day-old one is gone
    collections = {
        tuple(c["categories"]): c
        for c in rows(settings_db_only, "records.collections")
        if c["subject_id"] == subject_id(ledger, CAROL)
    }
    # Used again 100 days ago, while still inside its year: kept, clock restarted.
    assert collections[("contact.phone",)]["last_used_at"] == days_ago(100)
    # Used again only after its year had run out: purged, not revived.
    assert ("contact.postal",) not in collections
    assert removed == 2


def test_erasure_request_and_key_state(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    ids = scripted_history(ledger)
    catch_up(settings_db_only, reader)
    dave = subject_id(ledger, DAVE)
    keys = {r["subject_id"]: r for r in rows(settings_db_only, "erasure.subject_keys")}
    assert len(keys) == 4 and {k["state"] for k in keys.values()} == {"active"}
    [request] = rows(settings_db_only, "erasure.erasure_requests")
    assert (request["subject_id"], request["event_id"]) == (dave, ids["erase"])
    assert request["status"] == "requested"
    assert request["due_by"] == days_ago(1) + timedelta(days=30) or request["due_by"] == days_ago(
        1
    ) + timedelta(days=31)
    [subject] = [s for s in rows(settings_db_only, "consent.subjects") if s["subject_id"] == dave]
    assert subject["erasure_requested_at"] == days_ago(1)


def test_a_batch_applied_twice_changes_nothing(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    scripted_history(ledger)
    view = open_view(settings_db_only, "records")
    try:
        notifications = reader.recorder.select_notifications(1, 1000)
        batch = [
            (reader.mapper.to_domain_event(n), Tracking("Ledger", n.id)) for n in notifications
        ]
        first = view.process_batch(batch)
        before = rows(settings_db_only, "records.disclosures", "event_id")
        again = view.process_batch(batch)
    finally:
        view.datastore.close()
    assert first == again == notifications[-1].id
    assert rows(settings_db_only, "records.disclosures", "event_id") == before
    assert len(before) == 4


def test_rebuild_gives_the_live_views(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    scripted_history(ledger)
    catch_up(settings_db_only, reader, sweep=True)
    live = snapshot(settings_db_only)
    progress: list[tuple[int, int]] = []
    for name in VIEWS:
        rebuild(settings_db_only, name, reader, on_progress=lambda p, h: progress.append((p, h)))
    assert snapshot(settings_db_only) == live
    head = reader.recorder.max_notification_id()
    assert progress and progress[-1] == (head, head)


def test_rebuild_while_the_live_runner_follows_new_events(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    scripted_history(ledger)
    view = open_view(settings_db_only, "consent")
    stop = threading.Event()
    live = threading.Thread(target=ProjectionRunner(reader, view, batch_size=7).run, args=(stop,))
    live.start()
    writer_done = threading.Event()

    def keep_writing() -> None:
        for i in range(60):
            ledger.record([b.grant(f"user{i}@example.com", "newsletter")])
        writer_done.set()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        rebuild(settings_db_only, "consent", reader)
        writer.join()
        head = reader.recorder.max_notification_id()
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while view.position() < head and datetime.now(UTC) < deadline:
            stop.wait(0.1)
        assert view.position() == head
    finally:
        stop.set()
        live.join()
        view.datastore.close()
    followed = snapshot(settings_db_only, "consent.")
    rebuild(settings_db_only, "consent", reader)
    assert snapshot(settings_db_only, "consent.") == followed
    assert len(followed["consent.subjects"]) == 4 + 60
