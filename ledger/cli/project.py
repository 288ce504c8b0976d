"""``ledger project``: run, rebuild, inspect and sweep the projections."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from psycopg.rows import dict_row

from ledger.application.service import LedgerReader
from ledger.cli.common import (
    DATABASE_DOWN,
    fail,
    progress_bar,
    settings,
    stop_on_signals,
    wait_until_kafka_admits,
)
from ledger.cli.keys import before_serving
from ledger.process.runtime import open_reader
from ledger.process.settings import ConfigError, Settings
from projections.catalog import VIEWS, UnknownProjection, open_view, view_class
from projections.rebuild import rebuild
from projections.service import run_views
from projections.status import ViewStatus, parse_status, status_query
from projections.view import View

project = typer.Typer(
    help="Projections: consent state, one-year records, keys and erasures.",
    invoke_without_command=True,
)

Names = Annotated[
    list[str] | None,
    typer.Option("--only", help=f"Run only this projection (repeatable): {', '.join(VIEWS)}."),
]


@project.callback()
def run(ctx: typer.Context, only: Names = None) -> None:
    """Follow the ledger into every projection (or those given with --only) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    names = _names(only)
    s = settings()
    stop = stop_on_signals(s.shutdown_grace)
    wait_until_kafka_admits(s, stop)
    before_serving(s)
    reader = _reader(s)
    try:
        run_views(s, reader, names, stop)
    finally:
        reader.close()


@project.command("rebuild")
def rebuild_command(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(VIEWS)}.")],
) -> None:
    """Rebuild a projection from the first event, then swap it in for the live one."""
    _names([name])
    s = settings()
    reader = _reader(s)
    stop = stop_on_signals()
    try:
        with progress_bar(f"rebuilding {name}") as report:
            position = rebuild(s, name, reader, on_progress=report, stop=stop)
    except InterruptedError as exc:
        fail(str(exc), code=1)
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    finally:
        reader.close()
    typer.echo(f"rebuilt {name} up to event {position} and swapped it in")


@project.command("status")
def status() -> None:
    """Each projection's position and how many events it is behind the ledger."""
    s = settings()
    _ensure_views(s)
    for view in _status(s):
        flag = "  (rebuild in progress)" if view.rebuilding else ""
        typer.echo(f"{view.name}\tposition {view.position}\tlag {view.lag}{flag}")


@project.command("sweep")
def sweep() -> None:
    """Delete one-year records whose retention horizon has passed (the runner does it too)."""
    s = settings()
    for name in VIEWS:
        view = _open(s, name)
        try:
            removed = view.maintain()
        finally:
            view.datastore.close()
        typer.echo(f"{name}: removed {removed} expired entries")


def _names(only: list[str] | None) -> list[str]:
    try:
        return [view_class(n).name for n in only] if only else list(VIEWS)
    except UnknownProjection as exc:
        fail(str(exc))


def _reader(s: Settings) -> LedgerReader:
    try:
        s.require_database()
        return open_reader(s)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def _open(s: Settings, name: str) -> View:
    try:
        return open_view(s, name)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def _ensure_views(s: Settings) -> None:
    _reader(s).close()
    for name in VIEWS:
        _open(s, name).datastore.close()


def _status(s: Settings) -> list[ViewStatus]:
    with psycopg.connect(s.require_database(), row_factory=dict_row) as conn:
        row = conn.execute(status_query(s)).fetchone()
    assert row is not None
    return parse_status(row)


def register(app: typer.Typer) -> None:
    app.add_typer(project, name="project")
