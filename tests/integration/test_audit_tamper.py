"""Tampering with stored rows directly in PostgreSQL is detected, at the right position.

Each test records a small ledger, changes the database behind the ledger's back (as someone
with write access to it could), and runs ``ledger audit verify`` and the verifier beneath it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg import sql
from typer.testing import CliRunner

from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.integrity.sources import store_items
from ledger.integrity.verify import Problem, Report, verify
from ledger.process.runtime import open_ledger
from ledger.process.settings import load
from ledger.storage.chain import extend, stored
from tests.builders import REF, collect, disclose, erase, grant, withdraw
from tests.ledger_cases import BOB, ready


@pytest.fixture
def env(database_url: str, pg_schema: str, tmp_path: Path) -> dict[str, str]:
    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    return {
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_DATABASE_SCHEMA": pg_schema,
        "LEDGER_KEK": key(),
        "LEDGER_LOOKUP_KEY": key(),
        "LEDGER_CHECKPOINT_KEY": key(),
        "LEDGER_DATA_DIR": str(tmp_path),
    }


@pytest.fixture
def ledger(env: dict[str, str]) -> Iterator[Ledger]:
    """Ten events in three transactions, with a gap in the ids after the first two."""
    opened = open_ledger(load(env))
    ready(opened)  # ids 1-4
    first = opened.store.select_notifications(1, 1)[0]
    with pytest.raises(IntegrityError):  # a rolled-back insert uses up id 5
        opened.store.insert_events([StoredEvent(first.originator_id, 1, first.topic, b"{}")])
    opened.record([grant(REF), collect(REF), grant(BOB)])  # ids 6-10 (two registrations)
    opened.record([disclose(REF), withdraw(BOB)])  # ids 11-12
    yield opened
    opened.close()


@pytest.fixture
def db(env: dict[str, str], pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(env["LEDGER_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        yield conn


def ids(ledger: Ledger) -> list[int]:
    return [n.id for n in ledger.store.select_notifications(1, 1000)]


def checked(ledger: Ledger, batch: int = 5_000) -> Report:
    """The report over the store, read in pages (the verifier's tight loop) — the same report,
    field for field, as feeding the same items one at a time."""
    report = verify(store_items(ledger.store, batch=batch))
    assert report == verify(list(store_items(ledger.store, batch=batch)))
    return report


def first_problem(ledger: Ledger) -> Problem | None:
    return checked(ledger, batch=4).first


def audit(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify", *args], env=env)
    return result.exit_code, result.output


def test_an_untouched_ledger_verifies_with_a_gap_in_its_ids(
    ledger: Ledger, env: dict[str, str]
) -> None:
    assert 5 not in ids(ledger) and len(ids(ledger)) == 11
    code, out = audit(env)
    assert code == 0, out
    assert "11 events, 11 chain links, up to sequence 12" in out and "OK" in out


def test_a_changed_field_is_found_at_its_position(
    ledger: Ledger, db: psycopg.Connection[Any], env: dict[str, str]
) -> None:
    db.execute(
        "UPDATE ledger_events SET state = convert_to("
        'replace(convert_from(state, \'UTF8\'), \'"producer":"crm"\', \'"producer":"xyz"\'),'
        " 'UTF8') WHERE notification_id = 8"
    )
    assert first_problem(ledger) == Problem(
        8,
        "changed",
        "stored columns differ from what was chained (content changed or events swapped)",
    )
    code, out = audit(env)
    assert code == 1 and "FAILED at position 8: changed" in out


def test_a_deleted_event_is_found_with_or_without_its_link(
    ledger: Ledger, db: psycopg.Connection[Any]
) -> None:
    db.execute("DELETE FROM ledger_events WHERE notification_id = 9")
    problem = first_problem(ledger)
    assert problem is not None and (problem.position, problem.reason) == (9, "deleted")

    db.execute("DELETE FROM chain WHERE notification_id = 9")
    problem = first_problem(ledger)
    assert problem is not None and (problem.position, problem.reason) == (9, "deleted")
    assert "event 10 is chained to 9, which is missing" in problem.detail


def test_two_swapped_events_are_found_at_the_first_of_them(
    ledger: Ledger, db: psycopg.Connection[Any]
) -> None:
    db.execute(
        "UPDATE ledger_events e SET state = o.state FROM ledger_events o "
        "WHERE (e.notification_id, o.notification_id) IN ((7, 11), (11, 7))"
    )
    report = checked(ledger)
    assert [(p.position, p.reason) for p in report.problems] == [(7, "changed"), (11, "changed")]


def test_reordered_ids_are_found(ledger: Ledger, db: psycopg.Connection[Any]) -> None:
    db.execute("UPDATE ledger_events SET notification_id = -7 WHERE notification_id = 7")
    db.execute("UPDATE ledger_events SET notification_id = 7 WHERE notification_id = 8")
    db.execute("UPDATE ledger_events SET notification_id = 8 WHERE notification_id = -7")
    report = checked(ledger)
    assert [(p.position, p.reason) for p in report.problems] == [(7, "changed"), (8, "reordered")]


def test_an_inserted_event_is_found_with_or_without_a_forged_link(
    ledger: Ledger, db: psycopg.Connection[Any]
) -> None:
    forged = ledger.store.select_notifications(6, 1)[0]
    db.execute(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state, "
        "notification_id) VALUES (%s, 99, %s, %s, 5)",
        [forged.originator_id, forged.topic, forged.state],
    )
    problem = first_problem(ledger)
    assert problem is not None and (problem.position, problem.reason) == (5, "unchained")

    # A forger who knows the (public) chain format links the row in properly...
    before = ledger.store.select_chain(4, 1)[0]
    (link,) = extend(before, [stored(5, forged.originator_id, 99, forged.topic, forged.state)])
    db.execute("INSERT INTO chain VALUES (5, 4, %s)", [link.hash])
    # ...but the next event is still chained to 4.
    problem = first_problem(ledger)
    assert problem is not None and (problem.position, problem.reason) == (5, "inserted")


def test_rewriting_every_later_link_is_caught_by_a_checkpoint(
    ledger: Ledger, db: psycopg.Connection[Any], env: dict[str, str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["audit", "checkpoint"], env=env)
    assert result.exit_code == 0, result.output
    held = tmp_path / "checkpoint.json"
    held.write_text(result.output)
    assert json.loads(result.output)["sequence"] == 12

    db.execute("DELETE FROM ledger_events WHERE notification_id = 7")
    db.execute("DELETE FROM chain WHERE notification_id >= 7")
    db.execute("DELETE FROM checkpoints")  # the forger removes the stored one too
    events = ledger.store.select_notifications(7, 100)
    head = ledger.store.select_chain(6, 1)[0]
    relinked = extend(
        head,
        [stored(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in events],
    )
    for k in relinked:
        db.execute("INSERT INTO chain VALUES (%s, %s, %s)", [k.sequence, k.previous, k.hash])
    assert checked(ledger).ok  # the links alone cannot tell

    code, out = audit(env, "--checkpoint", str(held))
    assert code == 1
    assert "checkpoint at 12" in out and "DOES NOT HOLD" in out
    assert "FAILED at position 12: checkpoint" in out


def test_the_chain_verifies_after_shredding_and_a_held_checkpoint_holds(
    ledger: Ledger, env: dict[str, str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["audit", "checkpoint"], env=env)
    held = tmp_path / "checkpoint.json"
    held.write_text(result.output)
    ledger.record([erase(REF)])
    ledger.record([grant("carol@example.com")])

    code, out = audit(env, "--checkpoint", str(held))

    assert code == 0, out
    assert "checkpoint at 12" in out and "holds" in out
    assert REF not in out
