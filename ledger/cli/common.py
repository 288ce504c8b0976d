"""What every command needs: settings with readable errors, logging, and stop signals."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import psycopg
import typer
from eventsourcing import persistence

from ledger import logs
from ledger.application import Ledger
from ledger.domain.rules import RuleViolation
from ledger.runtime import open_ledger
from ledger.settings import ConfigError, Settings, load

DATABASE_DOWN = (persistence.OperationalError, persistence.InterfaceError, psycopg.Error)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        loaded = load()
    except ConfigError as exc:
        fail(str(exc))
    logs.configure(loaded.log_format)
    return loaded


def ledger(s: Settings | None = None) -> Ledger:
    """The ledger on the configured database, or a clear error and exit code 2."""
    try:
        return open_ledger(s or settings())
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def change_tenant(change: Callable[[Ledger], bool]) -> bool:
    """Runs a tenant policy change on the configured ledger; a refusal is a clean exit 1."""
    app = ledger()
    try:
        return change(app)
    except RuleViolation as exc:
        fail(exc.detail, code=1)
    finally:
        app.close()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP (the terminal closed), so a loop can finish
    its batch and exit cleanly — and ``ledger dev`` can stop the servers it started."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    return stop


def invocation() -> str:
    """How the user can call this same ``ledger`` from another terminal."""
    me = Path(sys.argv[0]).resolve()
    on_path = shutil.which("ledger")
    if me.name != "ledger" or (on_path and Path(on_path).resolve() == me):
        return "ledger"
    return os.path.relpath(me) if me.is_relative_to(Path.cwd()) else str(me)
