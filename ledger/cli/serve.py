"""``ledger serve``: the HTTP query API (OpenAPI document at ``/docs`` and ``/openapi.json``).

Stopping (SIGTERM, SIGINT or SIGHUP) goes in three steps:

1. ``/readyz`` answers 503 at once; for ``LEDGER_SHUTDOWN_DRAIN`` (default 0) every route,
   readiness included, is still served, so a load balancer sees the server unready and takes it
   out of rotation before connections are refused.
2. uvicorn's graceful shutdown: it stops accepting connections and lets requests in flight
   finish, for at most three quarters of ``LEDGER_SHUTDOWN_GRACE`` (the rest is for closing
   pools); any still running then are cancelled.
3. The app's lifespan closes its pools; the process exits 0. If it is still running
   drain + grace after the signal, it exits 1 (``stop_on_signals``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from ledger.cli.common import (
    DATABASE_DOWN,
    fail,
    settings,
    stop_on_signals,
    wait_until_kafka_admits,
)
from ledger.cli.keys import before_serving
from ledger.settings import ConfigError


class DrainingServer(uvicorn.Server):
    """uvicorn, stopped by the CLI's ``stop`` event instead of its own signal handlers: the
    event marks the app as stopping (``app.state.stopping``), then after ``drain_s`` starts
    uvicorn's graceful shutdown."""

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, stop: threading.Event, drain_s: float
    ) -> None:
        super().__init__(config)
        self.app = app
        self.stop = stop
        self.drain_s = drain_s
        self._drain_until: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the handlers of stop_on_signals stay in place; they set `stop`

    async def on_tick(self, counter: int) -> bool:
        if self.stop.is_set() and self._drain_until is None:
            self.app.state.stopping = True
            self._drain_until = time.monotonic() + self.drain_s
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(
    host: Annotated[str | None, typer.Option(help="Default: LEDGER_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: LEDGER_API_PORT.")] = None,
) -> None:
    """Serve the query API over the projections. Stops cleanly on Ctrl-C or SIGTERM."""
    from projections.api.app import create_app, prepare

    s = settings()
    stop = stop_on_signals(s.shutdown_drain + s.shutdown_grace)
    wait_until_kafka_admits(s, stop)
    before_serving(s)  # erasures a restored database lacks, before the first request
    try:
        prepare(s)
        app = create_app(s)
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    drain, grace = s.shutdown_drain.total_seconds(), s.shutdown_grace.total_seconds()
    config = uvicorn.Config(
        app,
        host=host or s.api_host,
        port=port or s.api_port,
        log_level="warning",  # access lines are left out: request logs come from structlog
        access_log=False,
        timeout_graceful_shutdown=max(1, math.floor(grace * 0.75)),
    )
    DrainingServer(config, app, stop, drain).run()


def register(app: typer.Typer) -> None:
    app.command()(serve)
