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
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from fastapi import FastAPI
from prometheus_client import multiprocess

from ledger.cli.common import (
    DATABASE_DOWN,
    fail,
    settings,
    stop_on_signals,
    wait_until_kafka_admits,
)
from ledger.cli.keys import before_serving
from ledger.plumbing import children
from ledger.plumbing.logs import get as get_logger
from ledger.process.settings import MAX_API_WORKERS as MAX_WORKERS
from ledger.process.settings import ConfigError, Settings
from projections.api.metrics import MULTIPROC_ENV

log = get_logger("serve")
T = TypeVar("T")
RESTART_DELAY_S = 1.0


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
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_WORKERS,
            help="Server processes sharing the port (default: LEDGER_API_WORKERS, else 1).",
        ),
    ] = None,
    fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Serve the query API over the projections. Stops cleanly on Ctrl-C or SIGTERM."""
    s = settings()
    workers = workers or s.api_workers
    stop = stop_on_signals(s.shutdown_drain + s.shutdown_grace)
    if fd is not None:  # a worker: its parent prepared the database for all of them
        _run(s, _app(s), stop, sockets=[socket.socket(fileno=fd)])
        return
    wait_until_kafka_admits(s, stop)
    before_serving(s)  # erasures a restored database lacks, before the first request
    _prepare(s)
    if workers == 1:
        _run(s, _app(s), stop, host=host or s.api_host, port=port or s.api_port)
    else:
        _supervise(s, stop, host or s.api_host, port or s.api_port, workers)


def _or_fail(step: Callable[[], T]) -> T:
    """``step()``; a configuration or database problem at start is a message, not a
    traceback."""
    try:
        return step()
    except ConfigError as exc:
        fail(str(exc))
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def _prepare(s: Settings) -> None:
    from projections.api.app import prepare

    _or_fail(lambda: prepare(s))


def _app(s: Settings) -> FastAPI:
    from projections.api.app import create_app

    return _or_fail(lambda: create_app(s))


def _run(
    s: Settings,
    app: FastAPI,
    stop: threading.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    sockets: list[socket.socket] | None = None,
) -> None:
    drain, grace = s.shutdown_drain.total_seconds(), s.shutdown_grace.total_seconds()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",  # access lines are left out: request logs come from structlog
        access_log=False,
        timeout_graceful_shutdown=max(1, math.floor(grace * 0.75)),
    )
    DrainingServer(config, app, stop, drain).run(sockets=sockets)


def _supervise(s: Settings, stop: threading.Event, host: str, port: int, workers: int) -> None:
    """Binds the port once and runs ``workers`` copies of ``ledger serve`` accepting on it (the
    kernel hands each connection to one of them), restarting any that dies, until stopped;
    then stops them as a single server stops (drain, grace). Their metrics are summed on
    every worker's ``/metrics`` (``prometheus_client``'s multiprocess mode, in a directory
    of this process's)."""
    try:
        listener = socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    metrics_dir = Path(tempfile.mkdtemp(prefix="ledger-serve-metrics-"))
    env = {**os.environ, MULTIPROC_ENV: str(metrics_dir)}
    fd = listener.fileno()
    listener.set_inheritable(True)

    def start() -> subprocess.Popen[bytes]:
        return children.spawn("serve", env, args=["--fd", str(fd)], pass_fds=[fd])

    procs = [start() for _ in range(workers)]
    log.info("serve_workers_started", workers=workers, host=host, port=port)
    try:
        while not stop.wait(0.5):
            for i, proc in enumerate(procs):
                if proc.poll() is not None and not stop.is_set():
                    log.error("serve_worker_exited", pid=proc.pid, code=proc.returncode)
                    multiprocess.mark_process_dead(proc.pid, str(metrics_dir))
                    stop.wait(RESTART_DELAY_S)  # a worker that cannot start does not spin
                    procs[i] = start()
    finally:
        grace = (s.shutdown_drain + s.shutdown_grace).total_seconds()
        children.stop(procs, grace_s=grace)
        listener.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("serve_workers_stopped")


def register(app: typer.Typer) -> None:
    app.command()(serve)
