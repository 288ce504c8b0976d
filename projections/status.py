"""How far behind the ledger each view is: one query, used by the CLI, readiness and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.process.settings import Settings
from projections.catalog import VIEWS, live_schema
from projections.view import APPLICATION_NAME, REBUILD_SUFFIX


@dataclass(frozen=True)
class ViewStatus:
    name: str
    position: int
    head: int
    rebuilding: bool

    @property
    def lag(self) -> int:
        """Events recorded in the ledger that the view has not applied yet."""
        return max(0, self.head - self.position)


def status_query(settings: Settings) -> Composed:
    """Head of the ledger and each view's position and rebuild flag, as one row.
    The views' schemas must exist (``open_view`` creates them)."""
    columns = [
        SQL("(SELECT coalesce(max(notification_id), 0) FROM {}.ledger_events) AS head").format(
            Identifier(settings.database_schema)
        )
    ]
    for name in VIEWS:
        schema = live_schema(settings, name)
        columns.append(
            SQL(
                "(SELECT notification_id FROM {}.tracking WHERE application_name = {}) AS {}"
            ).format(Identifier(schema), Literal(APPLICATION_NAME), Identifier(name))
        )
        columns.append(
            SQL("to_regnamespace({}) IS NOT NULL AS {}").format(
                Literal(schema + REBUILD_SUFFIX), Identifier(name + "_rebuilding")
            )
        )
    return SQL("SELECT ") + SQL(", ").join(columns)


def parse_status(row: dict[str, Any]) -> list[ViewStatus]:
    head = int(row["head"])
    return [
        ViewStatus(name, int(row[name] or 0), head, bool(row[name + "_rebuilding"]))
        for name in VIEWS
    ]


def oldest_write_query(settings: Settings) -> Composed:
    """Seconds the oldest open write transaction on the ledger's event table has been open
    (0 if none), as ``age``: every process's writers, whether they hold the table's lock or
    wait for it (``ledger.storage.write_watch`` ends a writer past ``LEDGER_WRITE_TIMEOUT``). The
    role must see the writers' sessions in ``pg_stat_activity`` (its own do; others' need
    ``pg_read_all_stats``)."""
    table = f'"{settings.database_schema}".ledger_events'
    return SQL(
        "SELECT coalesce(extract(epoch FROM now() - min(a.xact_start)), 0)::float8 AS age "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'relation' AND l.relation = to_regclass({}) "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.mode IN ('ExclusiveLock', 'RowExclusiveLock') AND a.xact_start IS NOT NULL"
    ).format(Literal(table))
