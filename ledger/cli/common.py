"""What every command needs: settings with readable errors, logging, and stop signals."""

from __future__ import annotations

import signal
import threading
from typing import NoReturn

import typer

from ledger import logs
from ledger.settings import ConfigError, Settings, load


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


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so a loop can finish its batch and exit cleanly."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
