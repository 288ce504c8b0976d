"""``ledger replay``: the projections as they stood at an instant, for auditors.

``ledger replay --as-of TIME`` builds a replay (progress bar), verifies the chain on the way,
prints what it found and, for each ``--subject``, the answers as of that instant (JSON lines:
consents, erasure status and, for each ``--purpose``, the purpose check). Personal fields stay
withheld unless ``--personal`` is given, and read ``erased`` where the key has since been
shredded. The replay stays queryable (``ledger replay show``, or the API's
``/v1/replays/{id}/...``) until it expires or is dropped; ``--drop`` drops it at once.
Exit status: 0 when the chain verified, 1 when it did not, 2 on a usage or service error.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
import typer
from psycopg.rows import dict_row
from pydantic import BaseModel

from ledger.cli.common import DATABASE_DOWN, fail, progress_bar, settings, stop_on_signals
from ledger.process.runtime import kek_ring, open_reader
from ledger.process.settings import ConfigError, Settings
from projections.api import answers
from projections.api.access import Principal, Scope
from projections.api.context import Reading
from projections.api.personal import SubjectKeys
from projections.api.problems import Problem
from projections.replay import service
from projections.replay.build import Built
from projections.replay.registry import ReplayRow, Replays

replay = typer.Typer(
    help="Replay the projections as of any instant and ask them what they said then.",
    invoke_without_command=True,
)
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="The instant (ISO 8601, e.g. 2026-03-01T12:00:00Z; a date alone is its start, UTC).",
    ),
]
Subjects = Annotated[
    list[UUID] | None, typer.Option("--subject", help="A subject id to answer for (repeatable).")
]
Purposes = Annotated[
    list[str] | None, typer.Option("--purpose", help="A purpose to check (repeatable).")
]
Personal = Annotated[
    bool, typer.Option("--personal", help="Open personal fields whose key still exists.")
]


@replay.callback()
def run(
    ctx: typer.Context,
    as_of: AsOf = None,
    subject: Subjects = None,
    purpose: Purposes = None,
    personal: Personal = False,
    drop: Annotated[bool, typer.Option("--drop", help="Drop the replay when done.")] = False,
) -> None:
    """Build a replay as of --as-of, verify the chain, and answer for the given subjects."""
    if ctx.invoked_subcommand is not None:
        return
    if as_of is None:
        fail("give --as-of TIME (or a command: list, show, drop)")
    instant = parse_instant(as_of)
    s = settings()
    with _replays(s) as replays:
        built, row = _build(s, replays, instant)
        _print_built(built)
        _answer(s, row, subject or [], purpose or [], personal)
        if drop:
            replays.drop(row.replay_id)
            typer.echo(f"dropped replay {row.replay_id}")
    raise typer.Exit(0 if built.audit.ok else 1)


@replay.command("show")
def show(
    replay_id: str,
    subject: Subjects = None,
    purpose: Purposes = None,
    personal: Personal = False,
) -> None:
    """Answer for subjects from a replay already built."""
    s = settings()
    with _replays(s) as replays:
        row = replays.get(replay_id)
    if row is None:
        fail(f"no replay {replay_id}")
    if row.status != "ready":
        fail(f"replay {replay_id} is {row.status}" + (f": {row.error}" if row.error else ""))
    _answer(s, row, subject or [], purpose or [], personal)


@replay.command("list")
def list_command() -> None:
    """Every replay kept: id, instant, status, who asked."""
    s = settings()
    with _replays(s) as replays:
        for row in replays.all():
            verified = (row.verification or {}).get("ok")
            typer.echo(
                f"{row.replay_id}  as of {row.as_of.isoformat()}  {row.status}  "
                f"applied {row.applied:,} of {row.head:,}  verified {verified}  "
                f"asked by {row.requested_by}"
            )


@replay.command("drop")
def drop_command(replay_id: str) -> None:
    """Drop a replay's schemas and its record."""
    s = settings()
    with _replays(s) as replays:
        if not replays.drop(replay_id):
            fail(f"no replay {replay_id}")
    typer.echo(f"dropped replay {replay_id}")


def parse_instant(text: str) -> datetime:
    """An aware instant; a date alone is its first moment in UTC, and a time without a zone is
    refused rather than guessed."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        instant = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--as-of {text!r} is not an ISO 8601 date or time")
    if instant.tzinfo is None:
        fail(f"--as-of {text!r} has no time zone; add Z or an offset such as +02:00")
    return instant


def _replays(s: Settings) -> Replays:
    try:
        return Replays.connect(s)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def _build(s: Settings, replays: Replays, instant: datetime) -> tuple[Built, ReplayRow]:
    try:
        row = service.start(replays, instant, "cli")
    except ValueError as exc:
        fail(str(exc))
    reader = open_reader(s)
    stop = stop_on_signals()
    try:
        with progress_bar(f"replaying to {instant.isoformat()}") as report:
            built = service.run(
                s, reader, replays, row, on_progress=lambda p, h, _: report(p, h), stop=stop
            )
    except InterruptedError as exc:
        fail(str(exc), code=1)
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    finally:
        reader.close()
    return built, row


def _print_built(built: Built) -> None:
    typer.echo(
        f"replay {built.replay_id} as of {built.as_of.isoformat()}: {built.applied:,} events "
        f"recorded by then (the last is {built.cut:,}); the ledger's head was {built.head:,}"
    )
    for line in built.audit.lines():
        typer.echo(line)


def _answer(
    s: Settings, row: ReplayRow, subjects: list[UUID], purposes: list[str], personal: bool
) -> None:
    if subjects:
        asyncio.run(_answer_async(s, row, subjects, purposes, personal))


async def _answer_async(
    s: Settings, row: ReplayRow, subjects: list[UUID], purposes: list[str], personal: bool
) -> None:
    _, lookup_key = s.require_keys()
    reading = Reading(s, service.queries(s, row), SubjectKeys(kek_ring(s), lookup_key))
    conn = await psycopg.AsyncConnection.connect(
        s.require_database(), autocommit=True, row_factory=dict_row
    )
    async with conn:
        for subject_id in subjects:
            tenant = await _tenant_of(conn, reading, subject_id)
            if tenant is None:
                _emit({"subject_id": str(subject_id), "error": "not recorded by the instant"})
                continue
            scope = Scope.AUDITOR if personal else Scope.READER
            who = Principal("cli", tenant, frozenset({scope}))
            try:
                _emit(await answers.consents(reading, conn, who, subject_id))
                _emit(await answers.erasure(reading, conn, who, subject_id))
                for purpose in purposes:
                    _emit(
                        await answers.purpose_check_by_id(reading, conn, who, subject_id, purpose)
                    )
            except Problem as exc:
                _emit({"subject_id": str(subject_id), "error": exc.detail})


async def _tenant_of(
    conn: psycopg.AsyncConnection[Any], reading: Reading, subject_id: UUID
) -> str | None:
    cur = await conn.execute(
        reading.queries.sql("SELECT tenant FROM {consent}.subjects WHERE subject_id = %s"),
        [subject_id],
    )
    found = await cur.fetchone()
    return None if found is None else str(found["tenant"])


def _emit(answer: BaseModel | dict[str, Any]) -> None:
    if isinstance(answer, BaseModel):
        typer.echo(answer.model_dump_json())
    else:
        typer.echo(json.dumps(answer))


def register(app: typer.Typer) -> None:
    app.add_typer(replay, name="replay")
