"""KEK rotation on PostgreSQL: every wrapped secret re-wrapped under the new KEK, online,
beside erasures that delete keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner, Result

from ledger.cli.main import app
from ledger.keys import crypto_ingest
from ledger.keys.crypto import new_secret
from ledger.keys.rotation import Rotation, RotationBlocked, WrappedSecretTable, kek_usage
from ledger.process.runtime import kek_ring, open_ledger
from ledger.process.settings import Settings, load
from ledger.webhooks import endpoints
from ledger.webhooks.tables import create_tables
from tests.builders import IP, TENANT, erase, grant
from tests.ledger_cases import ready, statuses, subject_id

KEK1, KEK2 = new_secret(), new_secret()
REFS = [f"subject-{i}@example.org" for i in range(6)]
WEBHOOK = "mailer-inc"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass
class Keys:
    """The environments of the three stages: before, during and after the rotation."""

    old: dict[str, str]
    rotating: dict[str, str]
    new_only: dict[str, str]


@pytest.fixture
def keys(database_url: str, pg_schema: str, tmp_path: Path) -> Keys:
    base = {
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_DATABASE_SCHEMA": pg_schema,
        "LEDGER_LOOKUP_KEY": b64(new_secret()),
        "LEDGER_DATA_DIR": str(tmp_path),
    }
    new = {**base, "LEDGER_KEK": b64(KEK2), "LEDGER_KEK_ID": "kek-2"}
    return Keys(
        old={**base, "LEDGER_KEK": b64(KEK1), "LEDGER_KEK_ID": "kek-1"},
        rotating={**new, "LEDGER_KEK_PREVIOUS": f"kek-1:{b64(KEK1)}"},
        new_only=new,
    )


@dataclass
class Stored:
    subjects: dict[UUID, str]  # id -> reference, in the table's key order
    webhook_secret: bytes


@pytest.fixture
def stored(keys: Keys) -> Iterator[Stored]:
    """Six subjects, an ingest key pair and a webhook endpoint, all under kek-1."""
    s = load(keys.old)
    ledger = ready(open_ledger(s))
    assert statuses(ledger.record([grant(r, ip_address=IP) for r in REFS])) == ["recorded"] * 6
    ledger.ingest_keys.current()
    ids = {subject_id(ledger, r): r for r in REFS}
    ledger.close()
    with connect(s) as conn:
        create_tables(conn, s.database_schema)
        secret = endpoints.add(
            conn,
            s.database_schema,
            kek_ring(s),
            tenant=TENANT,
            name=WEBHOOK,
            url="https://hooks.example.org/erasure",
            kind="recipient",
        )
    yield Stored({i: ids[i] for i in sorted(i for i in ids if i)}, secret)


def connect(s: Settings) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(s.require_database(), autocommit=True)


def usage(s: Settings) -> dict[str, dict[str, int]]:
    with connect(s) as conn:
        return kek_usage(conn, s.database_schema)


def test_rotation_rewraps_every_secret_and_never_resurrects_a_shredded_key(
    keys: Keys, stored: Stored
) -> None:
    s = load(keys.rotating)
    live = open_ledger(s)  # a process already running with the new configuration
    ids = list(stored.subjects)
    erased: list[UUID] = []

    def between_batches(table: WrappedSecretTable, n: int) -> None:
        if table.table == "subject_keys" and not erased:
            erased.extend([ids[0], ids[-1]])  # one already re-wrapped, one not yet
            outcomes = live.record([erase(stored.subjects[i]) for i in erased])
            assert statuses(outcomes) == ["recorded"] * 2

    with connect(s) as conn:
        result = Rotation(
            conn, s.database_schema, kek_ring(s), batch_size=2, on_batch=between_batches
        ).run()

    assert result.remaining == 0
    assert result.rotated == {
        "subject data keys": 5,
        "ingest private keys": 1,
        "webhook signing secrets": 1,
    }
    assert usage(s) == {
        "subject data keys": {"kek-2": 4},
        "ingest private keys": {"kek-2": 1},
        "webhook signing secrets": {"kek-2": 1},
    }
    assert live.store.wrapped_keys(erased) == {}
    live.close()
    assert_everything_opens(load(keys.new_only), stored, erased)


def assert_everything_opens(s: Settings, stored: Stored, erased: list[UUID]) -> None:
    """With only the new KEK configured, every secret that was not shredded opens."""
    ledger = open_ledger(s)
    for sid, ref in stored.subjects.items():
        registered, granted = ledger.subject_events(sid)[:2]
        opened = ledger.keys.open(sid, "subject_ref", registered.subject_ref)
        assert opened == (None if sid in erased else ref)
        if sid not in erased:
            assert ledger.keys.open(sid, "ip_address", granted.ip_address) == IP
    public = ledger.ingest_keys.public_key_for(TENANT)
    sealed = crypto_ingest.seal(public, "event-1", "ip_address", IP)
    assert ledger.ingest_keys.open(TENANT, "event-1", "ip_address", sealed) == IP
    ledger.close()
    with connect(s) as conn:
        query = "SELECT kek_id, wrapped_secret FROM {}.webhook_endpoints WHERE name = %s"
        row = conn.execute(
            sql.SQL(query).format(sql.Identifier(s.database_schema)), [WEBHOOK]
        ).fetchone()
    assert row is not None
    context = endpoints.secret_context(TENANT, WEBHOOK)
    secret = kek_ring(s).unwrap(bytes(row[1]), context, kek_id=str(row[0]))
    assert secret == stored.webhook_secret


def test_a_key_held_by_an_erasure_in_flight_is_skipped_and_stays_deleted(
    keys: Keys, stored: Stored
) -> None:
    s = load(keys.rotating)
    victim = next(iter(stored.subjects))
    table = sql.SQL("{}.subject_keys").format(sql.Identifier(s.database_schema))
    with psycopg.connect(s.require_database()) as erasure:  # one open transaction
        erasure.execute(
            sql.SQL("SELECT 1 FROM {} WHERE subject_id = %s FOR UPDATE").format(table), [victim]
        )
        with connect(s) as conn:
            first = Rotation(conn, s.database_schema, kek_ring(s), batch_size=4).run(passes=1)
        erasure.execute(sql.SQL("DELETE FROM {} WHERE subject_id = %s").format(table), [victim])
    with connect(s) as conn:
        second = Rotation(conn, s.database_schema, kek_ring(s)).run()
        left = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE subject_id = %s").format(table), [victim]
        ).fetchone()

    assert (first.remaining, first.rotated["subject data keys"]) == (1, 5)
    assert (second.remaining, second.rotated["subject data keys"]) == (0, 0)
    assert left == (0,)
    assert usage(s)["subject data keys"] == {"kek-2": 5}


def run_ledger(env: dict[str, str], *args: str) -> Result:
    """``ledger ARGS`` in process, with exactly this KEK configuration."""
    unset: dict[str, str | None] = {"LEDGER_KEK_FILE": None, "LEDGER_KEK_PREVIOUS": None}
    return CliRunner().invoke(app, list(args), env={**unset, **env, "LEDGER_LOG_FORMAT": "json"})


def test_the_commands_tell_when_the_old_kek_can_be_destroyed(keys: Keys, stored: Stored) -> None:
    with pytest.raises(RotationBlocked, match="6 subject data keys under kek-1") as blocked:
        s = load(keys.new_only)
        with connect(s) as conn:
            Rotation(conn, s.database_schema, kek_ring(s)).run()
    assert b64(KEK1) not in str(blocked.value)
    before = run_ledger(keys.rotating, "keys", "status")
    assert "kek-1: previous, wraps 8: run `ledger keys rotate` first" in before.output

    rotated = run_ledger(keys.rotating, "keys", "rotate", "--batch-size", "3")
    after = run_ledger(keys.rotating, "keys", "status")

    assert rotated.exit_code == 0, rotated.output
    assert "subject data keys: 6 re-wrapped under kek-2" in rotated.output
    assert "kek-2: current, wraps 8" in after.output
    assert "kek-1: previous, wraps nothing here: once no backup" in after.output
    assert b64(KEK1) not in before.output + rotated.output + after.output
