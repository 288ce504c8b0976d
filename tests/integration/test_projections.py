"""The projections over a scripted history, on a real PostgreSQL: answers, retention, rebuild."""

from __future__ import annotations

import threading
import types
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
from eventsourcing.persistence import Tracking
from psycopg import sql

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.process.settings import Settings
from projections.catalog import VIEWS, open_view
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.view import View, commit_channel
from tests import builders as b
from tests.history import (
    ALICE,
    BOB,
    CAROL,
    catch_up,
    days_ago,
    ledger,
    reader,
    record,
    rows,
    scripted_history,
    snapshot,
    subject_id,
)

__all__ = ["ledger", "reader"]  # fixtures


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


def test_a_purpose_without_consent_text_is_catalogued_with_no_texts(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    outcomes = ledger.record(
        [
            b.define_purpose("billing", "1", text="Billing v1"),
            b.define_purpose("billing", "", text="", basis=LegalBasis.CONTRACT),
            b.define_purpose("payroll", "", text="", basis=LegalBasis.LEGAL_OBLIGATION),
        ]
    )
    assert [o.status for o in outcomes] == ["recorded"] * 3
    catch_up(settings_db_only, reader)
    purposes = {r["purpose"]: r for r in rows(settings_db_only, "consent.purposes")}
    assert (purposes["payroll"]["current_version"], purposes["payroll"]["texts"]) == ("", {})
    # Redefined under another basis: the texts defined earlier stay in the catalogue.
    billing = purposes["billing"]
    assert (billing["legal_basis"], billing["current_version"]) == ("CONTRACT", "")
    assert billing["texts"] == {"1": "Billing v1"}


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
    dave = UUID(ids["dave"])
    keys = {r["subject_id"]: r for r in rows(settings_db_only, "erasure.subject_keys")}
    assert len(keys) == 4
    assert {i: k["state"] for i, k in keys.items() if k["state"] != "active"} == {dave: "shredded"}
    [request] = rows(settings_db_only, "erasure.erasure_requests")
    assert (request["subject_id"], request["event_id"]) == (dave, ids["erase"])
    assert request["status"] == "shredded"  # the notifier takes it on from here
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


def test_a_view_announces_each_commit_with_its_position(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    scripted_history(ledger)
    view = open_view(settings_db_only, "consent")
    notifications = reader.recorder.select_notifications(1, 1000)
    batch = [(reader.mapper.to_domain_event(n), Tracking("Ledger", n.id)) for n in notifications]
    channel = commit_channel(view.datastore.schema)
    try:
        with psycopg.connect(settings_db_only.require_database(), autocommit=True) as listener:
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            view.process_batch(batch[:3])
            view.process_batch(batch[:3])  # nothing new: no commit to announce
            view.process_batch(batch)
            heard = [n.payload for n in listener.notifies(timeout=1.0)]
    finally:
        view.datastore.close()
    assert heard == [str(notifications[2].id), str(notifications[-1].id)]


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


def test_retention_folds_the_same_whatever_the_batch_size(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    """The records view folds each batch in memory (``RetentionFold``); entries written by an
    earlier batch must be moved exactly as entries of the same batch are, and uses that
    arrive out of time order must move a clock only forward."""
    record(
        ledger,
        b.define_purpose("billing", "1", basis=LegalBasis.CONTRACT),
        b.at(b.collect(CAROL, "billing", categories=["contact.email"]), days_ago(300)),
        b.at(
            b.disclose(CAROL, "billing", LegalBasis.CONTRACT, categories=["contact.email"]),
            days_ago(200),
        ),
        # uses the email again: moves both entries above to 100 days ago
        b.at(
            b.collect(CAROL, "billing", categories=["contact.email", "contact.phone"]),
            days_ago(100),
        ),
        # earlier in time than the last use, recorded later: moves only what is older
        b.at(
            b.disclose(CAROL, "billing", LegalBasis.CONTRACT, categories=["contact.phone"]),
            days_ago(150),
        ),
        # another subject's use never touches Carol's entries
        b.at(b.collect(BOB, "billing", categories=["contact.email"]), days_ago(5)),
        # a category no earlier entry has: nothing moves
        b.at(b.collect(CAROL, "billing", categories=["contact.postal"]), days_ago(50)),
    )
    notifications = reader.recorder.select_notifications(1, 1000)
    batch = [(reader.mapper.to_domain_event(n), Tracking("Ledger", n.id)) for n in notifications]
    tables: dict[int, list[dict[str, object]]] = {}
    for size in (1, 3, len(batch)):
        schema = f"{settings_db_only.database_schema}_fold{size}"
        view = open_view(settings_db_only, "records", schema=schema)
        try:
            for i in range(0, len(batch), size):
                view.process_batch(batch[i : i + size])
        finally:
            view.datastore.close()
        found = []
        for table in ("collections", "disclosures"):
            for row in rows(settings_db_only, f"fold{size}.{table}", "event_id"):
                found.append({k: row[k] for k in ("event_id", "categories", "last_used_at")})
        tables[size] = sorted(found, key=lambda r: (str(r["categories"]), str(r["last_used_at"])))
    assert tables[1] == tables[3] == tables[len(batch)]
    last_used = sorted(
        (tuple(r["categories"]), r["last_used_at"])
        for r in tables[1]  # type: ignore[arg-type]
    )
    assert last_used == sorted(
        [
            (("contact.email",), days_ago(100)),  # collected 300 days ago
            (("contact.email",), days_ago(100)),  # disclosed 200 days ago
            (("contact.email",), days_ago(5)),  # Bob's
            (("contact.email", "contact.phone"), days_ago(100)),  # not moved by an older use
            (("contact.phone",), days_ago(150)),
            (("contact.postal",), days_ago(50)),
        ]
    )


def test_consent_and_erasure_views_fold_a_batch_as_they_apply_its_events_one_by_one(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings
) -> None:
    """Both views fold a batch (one statement for its registrations, one read and one write
    for its consents); whatever the batch size, the tables must be what applying each event's
    handler, one at a time, gives."""
    scripted_history(ledger)
    outcomes = record(
        ledger,
        b.hold(CAROL),
        b.erase(CAROL),  # under a hold: refused, and recorded as refused
        b.at(b.grant(CAROL, "newsletter", "1"), days_ago(9)),
        b.at(b.withdraw(CAROL, "newsletter"), days_ago(8)),
        b.at(b.grant(CAROL, "newsletter", "2"), days_ago(7)),  # granted anew: since 7 days
        b.at(b.grant(CAROL, "newsletter", "1"), days_ago(6)),  # still granted since 7 days
    )
    assert outcomes == ["recorded"] * 6
    notifications = reader.recorder.select_notifications(1, 1000)
    batch = [(reader.mapper.to_domain_event(n), Tracking("Ledger", n.id)) for n in notifications]
    tables = {
        "consent": {"purposes": "tenant, purpose", "subjects": "subject_id"},
        "erasure": {
            "subject_keys": "subject_id",
            "erasure_requests": "tenant, event_id",
            "legal_holds": "subject_id, hold_reference",
        },
    }
    tables["consent"]["consents"] = "subject_id, purpose"
    found: dict[str, dict[str, list[dict[str, object]]]] = {}
    for label, size in (("single", 1), ("fold1", 1), ("fold3", 3), ("foldall", len(batch))):
        found[label] = {}
        for name, names in tables.items():
            view = open_view(
                settings_db_only, name, schema=f"{settings_db_only.database_schema}_{label}{name}"
            )
            if label == "single":  # the handlers, one event at a time
                view.apply = types.MethodType(View.apply, view)  # type: ignore[method-assign]
            try:
                for i in range(0, len(batch), size):
                    view.process_batch(batch[i : i + size])
            finally:
                view.datastore.close()
            for table, order in names.items():
                found[label][f"{name}.{table}"] = rows(
                    settings_db_only, f"{label}{name}.{table}", order
                )
    assert found["single"]["erasure.legal_holds"]  # the history has all to compare
    carol = subject_id(ledger, CAROL)
    [newsletter] = [
        r
        for r in found["single"]["consent.consents"]
        if r["subject_id"] == carol and r["purpose"] == "newsletter"
    ]
    assert (newsletter["state"], newsletter["first_granted_at"]) == ("granted", days_ago(7))
    assert newsletter["consent_text_version"] == "1"
    for label in ("fold1", "fold3", "foldall"):
        assert found[label] == found["single"], label
