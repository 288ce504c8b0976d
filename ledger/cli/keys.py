"""``ledger keys reconcile|rotate|status``: erasures after a restore, and KEK rotation.

:func:`before_serving` is the reconciliation every serving process runs on start: if the
ledger topic cannot be read, the process stops with a message instead of serving from a
database that may have been restored from a backup older than an erasure.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from kafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ledger.cli.admin import keys
from ledger.cli.common import DATABASE_DOWN, fail, settings
from ledger.erasure.journal import JournalUnreadable
from ledger.erasure.reconcile import ReconcileReport, reconcile_configured
from ledger.kafka.admin import BrokerUnavailable
from ledger.kafka.diagnosis import explain
from ledger.keys.kek import KeyRing
from ledger.keys.rotation import (
    Rotation,
    RotationBlocked,
    RotationResult,
    WrappedSecretTable,
    kek_usage,
)
from ledger.process.runtime import kek_ring, open_reader
from ledger.process.settings import ConfigError, Settings

UNREADABLE = (BrokerUnavailable, JournalUnreadable, KafkaError, OSError)


def _reconcile(s: Settings) -> ReconcileReport:
    try:
        return reconcile_configured(s)
    except ConfigError as exc:
        fail(f"{exc} — erasures are reconciled from the ledger topic before serving")
    except UNREADABLE as exc:
        fail(
            f"cannot read the ledger topic {s.topics.ledger} to re-apply erasures "
            f"({explain(exc)}); not starting, because a database restored from "
            "a backup must not serve an erased subject. Start again once the broker is back."
        )
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def before_serving(s: Settings) -> None:
    """Re-applies erasures the ledger topic holds and this database lacks; exits (code 2)
    with a clear message if it cannot."""
    _reconcile(s)


@keys.command("reconcile")
def reconcile_command() -> None:
    """Re-apply to the key store every erasure on the ledger topic (run after a restore)."""
    s = settings()
    report = _reconcile(s)
    if not report.topic_exists:
        typer.secho(f"warning: ledger topic {s.topics.ledger} does not exist", fg="yellow")
    typer.echo(report.summary())


@keys.command("status")
def status_command() -> None:
    """How many wrapped secrets each KEK id wraps, and which KEK can be destroyed."""
    s = settings()
    ring = _ring(s)
    usage = _usage(s)
    typer.echo("secrets\tKEK\trows")
    for label, by_kek in usage.items():
        for kek_id, n in by_kek.items():
            typer.echo(f"{label}\t{kek_id}\t{n}")
    for line in verdicts(usage, ring):
        typer.echo(line)


def verdicts(usage: dict[str, dict[str, int]], ring: KeyRing) -> list[str]:
    """One line per KEK id, configured or found in the tables."""
    totals: dict[str, int] = dict.fromkeys(ring.key_ids, 0)
    for by_kek in usage.values():
        for kek_id, n in by_kek.items():
            totals[kek_id] = totals.get(kek_id, 0) + n
    lines = []
    for kek_id, n in totals.items():
        if kek_id == ring.key_id:
            lines.append(f"{kek_id}: current, wraps {n}")
        elif not ring.holds(kek_id):
            lines.append(f"{kek_id}: NOT CONFIGURED, wraps {n} that nobody can open")
        elif n:
            lines.append(f"{kek_id}: previous, wraps {n}: run `ledger keys rotate` first")
        else:
            lines.append(
                f"{kek_id}: previous, wraps nothing here: once no backup you may restore was "
                "taken under it, remove it from the configuration and destroy it"
            )
    return lines


@keys.command("rotate")
def rotate_command(
    batch_size: Annotated[int, typer.Option(min=1, help="Secrets per transaction.")] = 500,
) -> None:
    """Re-wrap every secret under the current KEK (LEDGER_KEK_ID), online, in batches."""
    s = settings()
    ring = _ring(s)
    try:
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            result = _rotate(Rotation(conn, s.database_schema, ring, batch_size=batch_size))
    except ConfigError as exc:
        fail(str(exc))
    except RotationBlocked as exc:
        fail(str(exc), code=1)
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    for label, n in result.rotated.items():
        typer.echo(f"{label}: {n} re-wrapped under {ring.key_id}")
    if result.remaining:
        fail(f"{result.remaining} secrets were held by live transactions; run again", code=1)
    typer.echo("every wrapped secret is under the current KEK (`ledger keys status`)")


def _rotate(rotation: Rotation) -> RotationResult:
    total = rotation.check()
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(f"re-wrapping under {rotation.ring.key_id}", total=total)

        def advance(table: WrappedSecretTable, n: int) -> None:
            bar.update(task, advance=n, description=f"re-wrapping {table.label}")

        rotation.on_batch = advance
        return rotation.run()


def _ring(s: Settings) -> KeyRing:
    try:
        return kek_ring(s)
    except ConfigError as exc:
        fail(str(exc))


def _usage(s: Settings) -> dict[str, dict[str, int]]:
    try:
        open_reader(s).close()  # the ledger's tables exist from here on
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            return kek_usage(conn, s.database_schema)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def register(app: typer.Typer) -> None:
    """The commands join ``ledger keys`` (``ledger.cli.admin``)."""
