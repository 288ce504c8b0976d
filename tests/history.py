"""A scripted history shared by the projection and API tests, and helpers to project it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings
from projections import service
from projections.catalog import VIEWS, live_schema, open_view
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
    service.catch_up(settings, reader)
    if sweep:
        for name in VIEWS:
            view = open_view(settings, name)
            try:
                view.maintain()
            finally:
                view.datastore.close()


def rows(settings: Settings, table: str, order: str = "1") -> list[dict[str, Any]]:
    """A view table's rows, without the position each was last changed at: which batch
    applied an event depends on how events were batched, not on what they say."""
    view, name = table.split(".")
    with psycopg.connect(settings.require_database(), row_factory=dict_row) as conn:
        found = conn.execute(
            f"SELECT * FROM {live_schema(settings, view)}.{name} ORDER BY {order}"
        ).fetchall()
    return [{k: v for k, v in row.items() if k != "position"} for row in found]


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
    """Returns the event ids the assertions refer to, and (``dave``) the id of the subject
    who is erased: once erased, no reference leads to it."""
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
    outcomes = ledger.record(
        [
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
        ]
    )
    assert [o.status for o in outcomes] == ["recorded"] * 8 + ["rejected"] * 2
    return {**ids, "dave": str(outcomes[6].aggregate_id)}


def subject_id(ledger: Ledger, ref: str) -> Any:
    found = ledger.find_subject(b.TENANT, ref)
    assert found is not None
    return found.id
