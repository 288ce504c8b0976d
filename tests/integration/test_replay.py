"""Replays as of an instant, on a real PostgreSQL: they answer as the live views did then.

A history is recorded in three phases. After each, the live views are brought up to date and
swept, and their tables and answers are captured at that instant. Replays as of the three
instants, built afterwards, must hold the same rows and give the same answers — except where
the ledger has since erased a subject: its personal fields now read ``erased`` and its
reference no longer leads to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.integrity.checkpoint_store import CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.process.runtime import kek_ring
from ledger.process.settings import Settings
from projections.api import answers
from projections.api.access import Principal, Scope
from projections.api.context import Reading
from projections.api.decisions import decide
from projections.api.personal import SubjectKeys
from projections.api.problems import Problem
from projections.catalog import VIEWS, live_schema
from projections.queries import DisclosureFilter, Queries
from projections.replay import service
from projections.replay.build import Built
from projections.replay.registry import ReplayRow, Replays, view_schemas
from tests import builders as b
from tests.history import ALICE, BOB, CAROL, DAVE, catch_up, ledger, reader

__all__ = ["ledger", "reader"]  # fixtures
REFS = {"alice": ALICE, "bob": BOB, "carol": CAROL, "dave": DAVE}
PURPOSES = ("terms", "newsletter", "billing")
AUDITOR = Principal("test", b.TENANT, frozenset({Scope.AUDITOR}))
EDGE = timedelta(seconds=2)  # a disclosure this close to the one-year edge at the first instant


@dataclass
class Moment:
    at: datetime
    tables: dict[str, list[dict[str, Any]]]
    answers: dict[str, Any]


def phase_one(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    ledger.record(
        [
            b.define_purpose("terms", required=True, text="Terms v1"),
            b.define_purpose("newsletter", "1", text="Newsletter v1"),
            b.define_purpose("billing", basis=LegalBasis.CONTRACT, text="Billing"),
        ]
    )
    ledger.record(
        [
            b.grant(ALICE, "terms"),
            b.grant(ALICE, "newsletter", evidence="ticked the box"),
            b.grant(BOB, "newsletter"),
            b.at(b.collect(CAROL, "billing", categories=["contact.postal"]), now - timedelta(200)),
            b.at(
                b.disclose(CAROL, "billing", LegalBasis.CONTRACT, recipient="old-bank"),
                now - timedelta(days=365) + EDGE,
            ),
            b.grant(DAVE, "newsletter", evidence="double opt-in"),
            b.collect(DAVE, description="newsletter form"),
        ]
    )


def phase_two(ledger: Ledger) -> None:
    ledger.record([b.define_purpose("newsletter", "2", text="Newsletter v2")])
    ledger.record(
        [
            b.withdraw(ALICE, "newsletter"),
            b.disclose(BOB, note="weekly list"),
            b.disclose(DAVE, recipient="mailer-inc"),
            b.hold(CAROL),
        ]
    )


def phase_three(ledger: Ledger) -> None:
    outcomes = ledger.record(
        [
            b.grant(ALICE, "newsletter", "2"),
            b.withdraw(BOB, "newsletter"),
            b.erase(DAVE),
            b.erase(CAROL),  # refused: a legal hold
        ]
    )
    assert [o.status for o in outcomes] == ["recorded"] * 4


def tables(settings: Settings, schemas: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every view table but the tracking row, in a stable order, without the
    positions rows are stamped with (which batch applied an event is not part of history)."""
    out = {}
    with psycopg.connect(settings.require_database(), row_factory=dict_row) as conn:
        for view, schema in schemas.items():
            names = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name <> 'tracking' ORDER BY 1",
                [schema],
            ).fetchall()
            for (name,) in (r.values() for r in names):
                query = sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(
                    sql.Identifier(schema, name)
                )
                rows = conn.execute(query).fetchall()
                out[f"{view}.{name}"] = [
                    {k: v for k, v in row.items() if k != "position"} for row in rows
                ]
    return out


def ask(settings: Settings, reading: Reading, subjects: dict[str, UUID]) -> dict[str, Any]:
    """Every question the API answers about these subjects, as the given reading answers it."""

    async def questions() -> dict[str, Any]:
        conn = await psycopg.AsyncConnection.connect(
            settings.require_database(), autocommit=True, row_factory=dict_row
        )
        out: dict[str, Any] = {}
        async with conn:

            async def put(key: str, answer: Awaitable[Any]) -> None:
                try:
                    out[key] = (await answer).model_dump(mode="json")
                except Problem as exc:
                    out[key] = {"problem": exc.status}

            for name, sid in subjects.items():
                await put(f"{name} consents", answers.consents(reading, conn, AUDITOR, sid))
                await put(
                    f"{name} collections",
                    answers.collections(reading, conn, AUDITOR, sid),
                )
                await put(
                    f"{name} disclosures",
                    answers.disclosures(reading, conn, AUDITOR, sid, None, None, None),
                )
                await put(f"{name} erasure", answers.erasure(reading, conn, AUDITOR, sid))
                for purpose in PURPOSES:
                    await put(
                        f"{name} {purpose} by id",
                        answers.purpose_check_by_id(reading, conn, AUDITOR, sid, purpose),
                    )
                    digest = reading.keys.digest(b.TENANT, REFS[name])
                    row = await reading.queries.purpose_check(conn, b.TENANT, digest, purpose)
                    out[f"{name} {purpose} by ref"] = decide(purpose, row).model_dump(mode="json")
            window = DisclosureFilter(
                reading.queries.now() - timedelta(days=365), reading.queries.now()
            )
            log = await reading.queries.disclosures(conn, b.TENANT, window)
            out["tenant disclosure log"] = [r["event_id"] for r in log]
        return out

    return asyncio.run(questions())


def erased_since(answer: dict[str, Any]) -> dict[str, Any]:
    """A live answer as a replay gives it once the subject's key is shredded."""
    if "personal_data" not in answer:
        return answer
    personal = ("subject_ref", "evidence", "ip_address", "user_agent", "description", "note")
    out = {k: (None if k in personal else v) for k, v in answer.items()}
    out["personal_data"] = "erased"
    for listing in ("consents", "collections", "disclosures"):
        if listing in out:
            out[listing] = [
                {k: (None if k in personal else v) for k, v in item.items()}
                for item in out[listing]
            ]
    return out


@pytest.fixture
def keys(settings_db_only: Settings) -> SubjectKeys:
    _, lookup_key = settings_db_only.require_keys()
    return SubjectKeys(kek_ring(settings_db_only), lookup_key)


@pytest.fixture
def replays(settings_db_only: Settings) -> Iterator[Replays]:
    made = Replays.connect(settings_db_only)
    yield made
    made.close()


def replay_to(
    settings: Settings, reader: LedgerReader, replays: Replays, at: datetime
) -> tuple[Built, ReplayRow]:
    row = service.start(replays, at, "test")
    built = service.run(settings, reader, replays, row)
    return built, row


def test_replays_answer_as_the_live_views_did_at_the_same_instants(
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
    replays: Replays,
    keys: SubjectKeys,
) -> None:
    s = settings_db_only
    live = {name: live_schema(s, name) for name in VIEWS}
    moments: list[Moment] = []
    subjects: dict[str, UUID] = {}
    for phase in (phase_one, phase_two, phase_three):
        phase(ledger)
        catch_up(s, reader, sweep=True)
        at = datetime.now(UTC)
        for name, ref in REFS.items():
            found = ledger.find_subject(b.TENANT, ref)
            if found is not None:
                subjects[name] = found.id
        reading = Reading(s, Queries(s, as_of=at), keys)
        moments.append(Moment(at, tables(s, live), ask(s, reading, dict(subjects))))
        time.sleep(0.01)  # the next phase's events are recorded strictly after ``at``
    signer = CheckpointSigner(new_private_key())
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        checkpoint = make_checkpoint(
            reader.store, CheckpointTable(conn, s.database_schema), signer, 10
        )
    assert checkpoint is not None
    time.sleep(max(0.0, (moments[0].at + EDGE - datetime.now(UTC)).total_seconds()) + 0.5)

    for i, moment in enumerate(moments):
        built, row = replay_to(s, reader, replays, moment.at)
        assert built.audit.ok, built.audit.lines()
        assert [c.holds for c in built.audit.checkpoints] == [True]
        assert built.audit.report.events == reader.store.max_notification_id()  # read it all
        assert tables(s, view_schemas(s, row.replay_id)) == moment.tables, f"instant {i + 1}"

        reading = Reading(s, service.queries(s, row), keys)
        answers_now = ask(s, reading, dict(subjects))
        expected = dict(moment.answers)
        if i < 2:  # Dave was erased after these instants: his key is gone today
            for key in [k for k in expected if k.startswith("dave ")]:
                expected[key] = erased_since(expected[key])
            for purpose in PURPOSES:
                assert answers_now[f"dave {purpose} by ref"]["reason"] == "subject_erased"
                expected[f"dave {purpose} by ref"] = answers_now[f"dave {purpose} by ref"]
        assert answers_now == expected, f"instant {i + 1}"

    first = moments[0].answers
    assert first["alice newsletter by id"]["reason"] == "consent_granted"
    assert moments[1].answers["alice newsletter by id"]["reason"] == "consent_withdrawn"
    assert first["dave consents"]["personal_data"] == "visible"  # erased only later
    assert moments[2].answers["dave newsletter by id"]["reason"] == "erasure_requested"
    assert len(first["carol disclosures"]["disclosures"]) == 1  # near the edge, still inside
    reading = Reading(s, Queries(s), keys)
    assert ask(s, reading, {"carol": subjects["carol"]})["carol disclosures"]["disclosures"] == []


def test_a_replay_reports_a_chain_that_does_not_verify(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings, replays: Replays
) -> None:
    s = settings_db_only
    phase_one(ledger)
    at = datetime.now(UTC)
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE notification_id = 4").format(
                sql.Identifier(s.database_schema, "chain")
            )
        )

    built, row = replay_to(s, reader, replays, at)

    assert not built.audit.ok
    first = built.audit.first
    assert first is not None and (first.position, first.reason) == (4, "unchained")
    stored = replays.get(row.replay_id)
    assert stored is not None and stored.status == "ready"
    assert stored.verification is not None and stored.verification["ok"] is False
    assert stored.verification["first_problem"]["position"] == 4


def test_a_replay_is_dropped_with_its_schemas_and_refuses_the_future(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings, replays: Replays
) -> None:
    s = settings_db_only
    phase_one(ledger)
    _, row = replay_to(s, reader, replays, datetime.now(UTC))
    schemas = list(view_schemas(s, row.replay_id).values())

    assert replays.drop(row.replay_id)

    with psycopg.connect(s.require_database()) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)", [schemas]
        ).fetchone()
    assert left == (0,)
    assert replays.get(row.replay_id) is None
    with pytest.raises(service.FutureInstant):
        service.start(replays, datetime.now(UTC) + timedelta(minutes=1), "test")


def test_a_replay_dropped_while_it_waits_is_not_built(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings, replays: Replays
) -> None:
    s = settings_db_only
    phase_one(ledger)
    row = service.start(replays, datetime.now(UTC), "test")
    replays.drop(row.replay_id)

    with pytest.raises(InterruptedError, match="dropped"):
        service.run(s, reader, replays, row)

    with psycopg.connect(s.require_database()) as conn:
        schemas = list(view_schemas(s, row.replay_id).values())
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)", [schemas]
        ).fetchone()
    assert left == (0,) and replays.get(row.replay_id) is None
