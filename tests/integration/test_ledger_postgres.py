"""The storage contract cases against PostgreSQL, plus what only a real transaction can show."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.application.service import Ledger
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.storage.postgres import PostgresLedgerRecorder
from tests.builders import REF, TENANT, collect, grant
from tests.chain_cases import ChainCases
from tests.erasure_cases import ErasureCases
from tests.ledger_cases import (
    BOB,
    LedgerCases,
    OpenLedger,
    SpyOnNewSubjects,
    event_count,
    ready,
    statuses,
    subject_id,
    versions_of,
)
from tests.merkle_cases import MerkleCases
from tests.rights_cases import RightsCases

SIDE_TABLES = ("subject_keys", "subject_refs", "ingest_receipts")


class TestPostgresLedger(LedgerCases, ErasureCases, RightsCases, ChainCases, MerkleCases):
    @pytest.fixture
    def opened(self) -> Iterator[list[Ledger]]:
        ledgers: list[Ledger] = []
        yield ledgers
        for ledger in ledgers:
            ledger.close()

    @pytest.fixture
    def ledger(self, settings_db_only: Settings, opened: list[Ledger]) -> Ledger:
        opened.append(open_ledger(settings_db_only))
        return opened[-1]

    @pytest.fixture
    def open_same_store(self, settings_db_only: Settings, opened: list[Ledger]) -> OpenLedger:
        def open_same() -> Ledger:
            opened.append(open_ledger(settings_db_only))
            return opened[-1]

        return open_same

    @pytest.fixture
    def open_other_store(
        self, settings_db_only: Settings, opened: list[Ledger], database_url: str
    ) -> Iterator[OpenLedger]:
        schemas: list[str] = []

        def open_other() -> Ledger:
            schemas.append(f"t_{uuid.uuid4().hex[:12]}")
            opened.append(open_ledger(settings_db_only.with_overrides(database_schema=schemas[-1])))
            return opened[-1]

        yield open_other
        for ledger in opened:
            ledger.close()
        opened.clear()
        with psycopg.connect(database_url, autocommit=True) as conn:
            for name in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )


def _row_counts(settings: Settings) -> dict[str, int]:
    counts = {}
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        for table in SIDE_TABLES:
            query = sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(settings.database_schema, table)
            )
            row = conn.execute(query).fetchone()
            assert row is not None
            counts[table] = row[0]
    return counts


def _fail_inserting_events(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, *, after_insert: bool
) -> None:
    """Makes the next saves fail inside their transaction, after the key, reference and
    receipt rows were written (and, with ``after_insert``, after the events too)."""
    store = ledger.store
    assert isinstance(store, PostgresLedgerRecorder)
    original: Callable[..., Any] = store._insert_stored_events

    def failing(*args: Any, **kwargs: Any) -> None:
        if after_insert:
            original(*args, **kwargs)
        raise RuntimeError("simulated failure while inserting events")

    monkeypatch.setattr(store, "_insert_stored_events", failing)


@pytest.mark.parametrize("after_insert", [False, True], ids=["before-events", "after-events"])
def test_a_failed_save_writes_no_key_reference_or_receipt(
    settings_db_only: Settings, monkeypatch: pytest.MonkeyPatch, after_insert: bool
) -> None:
    ledger = open_ledger(settings_db_only)
    try:
        ready(ledger)
        spy = SpyOnNewSubjects(ledger, monkeypatch)
        rows, events = _row_counts(settings_db_only), event_count(ledger)
        batch = [grant(REF), collect(REF), grant(BOB)]

        _fail_inserting_events(ledger, monkeypatch, after_insert=after_insert)
        with pytest.raises(RuntimeError, match="simulated"):
            ledger.record(batch)

        assert _row_counts(settings_db_only) == rows
        assert event_count(ledger) == events
        assert ledger.store.wrapped_keys(spy.ids) == {}
        assert subject_id(ledger, REF) is None
        assert (
            ledger.store.recorded_receipts([(TENANT, c.envelope.event_id) for c in batch]) == set()
        )

        # The ledger forgot what the failed attempt made, so the batch records cleanly later.
        monkeypatch.undo()
        assert statuses(ledger.record(batch)) == ["recorded"] * 3
        alice = subject_id(ledger, REF)
        assert alice is not None
        assert versions_of(ledger, alice) == [1, 2, 3]
    finally:
        ledger.close()


def test_a_failed_save_on_one_instance_leaves_the_store_usable_for_another(
    settings_db_only: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = open_ledger(settings_db_only), open_ledger(settings_db_only)
    try:
        ready(first)
        _fail_inserting_events(first, monkeypatch, after_insert=False)
        with pytest.raises(RuntimeError):
            first.record([grant(REF)])
        monkeypatch.undo()

        outcome = second.record([grant(REF)])[0]
        assert outcome.status == "recorded"
        assert first.find_subject(TENANT, REF) is not None
        assert subject_id(first, REF) == outcome.aggregate_id
    finally:
        first.close()
        second.close()
