"""Replays on record: one row per replay in ``<ledger schema>.replays``.

A replay's views live in schemas of their own, ``<ledger schema>_replay_<id>_<view>``, beside
the live ones; its row says which instant it answers for, who asked, how far the build got and
what verification found. Rules this module keeps:

- **Scratch, never live.** A replay writes only its own schemas. :func:`drop` removes them and
  the row; :func:`sweep` drops replays older than ``LEDGER_REPLAY_TTL`` and builds that died.
- **Progress is visible.** The builder moves the row's position every page. A build whose row
  has not moved for :data:`STALE` is reported ``failed`` (its builder is gone) and swept; a
  queued one waits its turn and only expires. A build whose row was dropped meanwhile stops
  at its next page.
- **Owned by who asked.** ``requested_by`` is the tenant whose API key asked (or ``cli``);
  the API shows a tenant only its own replays.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.process.settings import Settings
from projections.catalog import VIEWS

STALE = timedelta(minutes=5)

CREATE = """
CREATE TABLE IF NOT EXISTS {table} (
    replay_id text PRIMARY KEY,
    requested_by text NOT NULL,
    as_of timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'building', 'ready', 'failed')),
    head bigint NOT NULL DEFAULT 0,
    position bigint NOT NULL DEFAULT 0,
    applied bigint NOT NULL DEFAULT 0,
    cut bigint NOT NULL DEFAULT 0,
    verification jsonb,
    error text,
    seconds double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
)"""
COLUMNS = (
    "replay_id, requested_by, as_of, status, head, position, applied, cut, verification, "
    "error, seconds, created_at, updated_at, finished_at, "
    "(status = 'building' AND updated_at < now() - %(stale)s) AS stalled"
)


class Dropped(InterruptedError):
    """The replay's row is gone (dropped or expired) while it was being built."""


@dataclass(frozen=True)
class ReplayRow:
    replay_id: str
    requested_by: str
    as_of: datetime
    status: str
    head: int
    position: int
    applied: int
    cut: int
    verification: dict[str, Any] | None
    error: str | None
    seconds: float | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> ReplayRow:
        fields = {k: v for k, v in row.items() if k != "stalled"}
        if row["stalled"]:
            fields |= {"status": "failed", "error": "the process building it stopped"}
        return cls(**fields)


def new_id() -> str:
    return secrets.token_hex(6)


def view_schemas(settings: Settings, replay_id: str) -> dict[str, str]:
    """The replay's schema for each view."""
    return {name: f"{settings.database_schema}_replay_{replay_id}_{name}" for name in VIEWS}


class Replays:
    """The replays table, on a synchronous autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any], settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.table = Identifier(settings.database_schema, "replays")

    @classmethod
    def connect(cls, settings: Settings) -> Replays:
        conn = psycopg.connect(
            settings.require_database(), autocommit=True, row_factory=dict_row, connect_timeout=10
        )
        replays = cls(conn, settings)
        replays.create_table()
        return replays

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Replays:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sql(self, text: str) -> Composed:
        return SQL(text).format(table=self.table)

    def create_table(self) -> None:
        self.conn.execute(self.sql(CREATE))

    def add(self, as_of: datetime, requested_by: str) -> ReplayRow:
        row = self.conn.execute(
            self.sql(
                "INSERT INTO {table} (replay_id, requested_by, as_of, status) "
                f"VALUES (%(id)s, %(by)s, %(as_of)s, 'queued') RETURNING {COLUMNS}"
            ),
            {"id": new_id(), "by": requested_by, "as_of": as_of, "stale": STALE},
        ).fetchone()
        assert row is not None
        return ReplayRow.of(row)

    def get(self, replay_id: str, requested_by: str | None = None) -> ReplayRow | None:
        row = self.conn.execute(*select_one(self.settings, replay_id, requested_by)).fetchone()
        return None if row is None else ReplayRow.of(row)

    def all(self, requested_by: str | None = None) -> list[ReplayRow]:
        rows = self.conn.execute(*select_all(self.settings, requested_by)).fetchall()
        return [ReplayRow.of(r) for r in rows]

    def progress(self, replay_id: str, *, head: int, position: int, applied: int) -> None:
        """Records how far the build got; raises :class:`Dropped` if the replay is gone."""
        cur = self.conn.execute(
            self.sql(
                "UPDATE {table} SET status = 'building', head = %s, position = %s, applied = %s, "
                "updated_at = now() WHERE replay_id = %s"
            ),
            [head, position, applied, replay_id],
        )
        if cur.rowcount == 0:
            raise Dropped(f"replay {replay_id} was dropped while it was being built")

    def finish(
        self,
        replay_id: str,
        *,
        cut: int,
        applied: int,
        verification: dict[str, Any],
        seconds: float,
    ) -> None:
        self.conn.execute(
            self.sql(
                "UPDATE {table} SET status = 'ready', position = head, cut = %s, applied = %s, "
                "verification = %s, seconds = %s, updated_at = now(), finished_at = now() "
                "WHERE replay_id = %s"
            ),
            [cut, applied, json.dumps(verification), seconds, replay_id],
        )

    def fail(self, replay_id: str, error: str) -> None:
        self.conn.execute(
            self.sql(
                "UPDATE {table} SET status = 'failed', error = %s, updated_at = now(), "
                "finished_at = now() WHERE replay_id = %s"
            ),
            [error, replay_id],
        )

    def drop(self, replay_id: str) -> bool:
        """Drops the replay's schemas and its row; False if there was no such replay."""
        with self.conn.transaction():
            self.drop_schemas(replay_id)
            cur = self.conn.execute(
                self.sql("DELETE FROM {table} WHERE replay_id = %s"), [replay_id]
            )
            return cur.rowcount > 0

    def drop_schemas(self, replay_id: str) -> None:
        for schema in view_schemas(self.settings, replay_id).values():
            self.conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))

    def sweep(self) -> list[str]:
        """Drops replays older than the TTL and builds that stopped moving; returns their ids."""
        rows = self.conn.execute(
            self.sql(
                "SELECT replay_id FROM {table} WHERE created_at < now() - %s "
                "OR (status = 'building' AND updated_at < now() - %s)"
            ),
            [self.settings.replay_ttl, STALE],
        ).fetchall()
        ids = [r["replay_id"] for r in rows]
        for replay_id in ids:
            self.drop(replay_id)
        return ids


def select_one(
    settings: Settings, replay_id: str, requested_by: str | None
) -> tuple[Composed, dict[str, Any]]:
    """The statement (and parameters) that reads one replay, for sync or async connections."""
    where = "replay_id = %(id)s" + (" AND requested_by = %(by)s" if requested_by else "")
    text = f"SELECT {COLUMNS} FROM {{table}} WHERE {where}"
    table = Identifier(settings.database_schema, "replays")
    return SQL(text).format(table=table), {"id": replay_id, "by": requested_by, "stale": STALE}


def select_all(settings: Settings, requested_by: str | None) -> tuple[Composed, dict[str, Any]]:
    where = "WHERE requested_by = %(by)s" if requested_by else ""
    text = f"SELECT {COLUMNS} FROM {{table}} {where} ORDER BY created_at DESC"
    table = Identifier(settings.database_schema, "replays")
    return SQL(text).format(table=table), {"by": requested_by, "stale": STALE}
