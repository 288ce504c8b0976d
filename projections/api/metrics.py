"""Prometheus metrics for the query API, on a registry each app owns.

Rules this module keeps:

* Requests are labelled by route template (``/tenants/{tenant}/subjects/{ref}``), never by
  raw path: paths carry subject references, and raw paths would make the label set
  unbounded. Requests no route matched share ``<unmatched>``; unknown methods share
  ``OTHER``.
* The buckets are fine below 10 ms, the latency the purpose-check path is held to.
* The timing middleware is plain ASGI (no ``BaseHTTPMiddleware``, which costs a task and a
  stream per request) and measures until the response has been sent.
* ``/metrics`` is unauthenticated and holds no personal data; expose it only where the
  scraper runs. It renders in a worker thread, so collectors may do blocking I/O.
* Under ``ledger serve --workers N`` each worker's ``/metrics`` shows the requests of all of
  them: the parent sets ``PROMETHEUS_MULTIPROC_DIR`` (``prometheus_client``'s multiprocess
  mode), request timings go to files there, and the page sums them. A scrape may reach any
  worker and sees the same totals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def request_duration(registry: CollectorRegistry | None) -> Histogram:
    return Histogram(
        "ledger_http_request_duration_seconds",
        "Time to answer an HTTP request to the query API, by route template and status.",
        labelnames=("method", "route", "status"),
        buckets=BUCKETS,
        registry=registry,
    )


def purpose_memory(registry: CollectorRegistry | None) -> Callable[[str, int], None]:
    """Counts the purpose-check memory's work (``projections.api.purpose_cache``): references
    found in memory or read from the database, probes run, and times memory was emptied."""
    lookups = Counter(
        "ledger_purpose_check_memory_lookups",
        "References the purpose check found in memory (hit) or read from the database (miss).",
        labelnames=("outcome",),
        registry=registry,
    )
    probes = Counter(
        "ledger_purpose_check_probes",
        "Probes that brought purpose-check memory up to the consent view before answering.",
        registry=registry,
    )
    emptied = Counter(
        "ledger_purpose_check_memory_emptied",
        "Times purpose-check memory was emptied (a rebuild, a view that went back, too much "
        "changed at once).",
        registry=registry,
    )
    counters = {
        "hits": lookups.labels("hit"),
        "misses": lookups.labels("miss"),
        "probes": probes,
        "emptied": emptied,
    }

    def count(what: str, n: int) -> None:
        counters[what].inc(n)

    return count


def route_template(scope: Scope) -> str:
    """The path pattern of the route that matched (set by the router), else ``UNMATCHED``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class _Timing:
    """Observes every HTTP request's duration; an exception counts as status 500."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.histogram.labels(method, route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )


def shared_registry(registry: CollectorRegistry) -> CollectorRegistry | None:
    """Where a metric goes: ``registry``, or (several workers) the multiprocess files every
    worker's page sums."""
    return None if os.environ.get(MULTIPROC_ENV) else registry


def install(app: FastAPI, registry: CollectorRegistry) -> Histogram:
    """Times ``app``'s requests into ``registry`` and serves it at ``GET /metrics``.

    Other collectors registered on ``registry`` (now or later) appear on the same page.
    Call before the app starts; the registry is also kept as ``app.state.metrics_registry``.
    """
    histogram = request_duration(shared_registry(registry))
    if os.environ.get(MULTIPROC_ENV):  # several workers: every worker shows their sum
        multiprocess.MultiProcessCollector(registry)
    app.add_middleware(_Timing, histogram=histogram)
    app.state.metrics_registry = registry

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return histogram
