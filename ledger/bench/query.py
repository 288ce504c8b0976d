"""``ledger bench query``: purpose-check latency under load, against the running API.

The ledger gets ``subjects`` new subjects, each granted the bench purpose and every second one
withdrawn again; the views are brought up to date; then ``ledger serve`` runs as its own
process and is asked ``POST /v1/purpose-check`` at a fixed rate over keep-alive connections.
Every answer is checked (allowed for a granted subject, refused for a withdrawn one).

The baseline is the same SQL the route runs (``Queries.purpose_check_sql``) and the same
decision, sent straight to PostgreSQL at the same rate over as many connections: what the
API adds on top of it is HTTP, authentication, the reference's HMAC and JSON.

Then the batch route, ``POST /v1/purpose-checks``, is asked for pages of ``batch_size`` pairs
at ``batch_rate`` pages a second, every decision checked, against its own SQL sent straight
(``Queries.purpose_checks_sql``) in the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import psycopg
from psycopg.rows import DictRow, dict_row

from ledger.bench.load import Call, Summary, Worker, open_loop
from ledger.bench.setup import PURPOSE, TENANT, processes, wait_for_api
from ledger.keys.crypto import reference_digest
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings
from ledger.wire.contract import Command, Envelope, new_event_id, personal_fields
from projections.api import access
from projections.api.app import prepare
from projections.api.decisions import decide
from projections.queries import Queries
from projections.service import catch_up

BATCH = 500
# p99 targets by rate (requests/s): the issue that set each; a run is held to the one for the
# highest rate it reaches.
TARGETS_P99_S = {200.0: 0.010, 500.0: 0.002, 2000.0: 0.005}
BATCH_TARGET_P99_S = 0.010  # 100 pairs at 50 pages a second (issue 13)
WARMUP_S = 3.0


class WrongAnswer(AssertionError):
    """The service answered, but not what the seeded history says."""


def seed(s: Settings, subjects: int) -> tuple[list[str], list[bool]]:
    """Records the history; returns the references and whether each may be processed."""
    run = uuid4().hex[:8]
    refs = [f"bench-{run}-{i}@example.com" for i in range(subjects)]
    allowed = [i % 2 == 0 for i in range(subjects)]
    commands: list[Command] = []
    for ref, ok in zip(refs, allowed, strict=True):
        commands.append(_command("ConsentGranted", ref, consent_text_version="1"))
        if not ok:
            commands.append(_command("ConsentWithdrawn", ref))
    ledger = open_ledger(s)
    try:
        for i in range(0, len(commands), BATCH):
            outcomes = ledger.record(commands[i : i + BATCH])
            if any(o.status != "recorded" for o in outcomes):
                raise RuntimeError("the benchmark history was not recorded as planned")
    finally:
        ledger.close()
    return refs, allowed


def _command(kind: str, ref: str, **facts: str) -> Command:
    env = Envelope(new_event_id(), TENANT, ref, datetime.now(UTC), "bench")
    personal: dict[str, str | None] = dict.fromkeys(personal_fields(kind))
    return Command(kind, env, {"purpose": PURPOSE, "source": "bench", **facts}, personal)


def project(s: Settings) -> None:
    prepare(s)
    reader = open_reader(s)
    try:
        catch_up(s, reader)
    finally:
        reader.close()


def api_key(s: Settings) -> str:
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        token, _ = access.create_key(conn, s.database_schema, TENANT, ["reader"], "bench")
    return token


def api_worker(s: Settings, token: str, refs: list[str], allowed: list[bool]) -> Worker:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    @contextlib.contextmanager
    def worker() -> Iterator[Call]:
        conn = http.client.HTTPConnection(s.api_host, s.api_port, timeout=10)

        def call(i: int) -> None:
            n = i % len(refs)
            body = json.dumps({"subject_ref": refs[n], "purpose": PURPOSE})
            conn.request("POST", "/v1/purpose-check", body, headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200 or answer["allowed"] is not allowed[n]:
                raise WrongAnswer(f"HTTP {response.status}, reason {answer.get('reason')}")

        try:
            yield call
        finally:
            conn.close()

    return worker


def _page(i: int, size: int, count: int) -> list[int]:
    """The subjects of page ``i``: ``size`` consecutive ones, wrapping around."""
    return [(i * size + k) % count for k in range(size)]


def batch_api_worker(
    s: Settings, token: str, refs: list[str], allowed: list[bool], size: int
) -> Worker:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    @contextlib.contextmanager
    def worker() -> Iterator[Call]:
        conn = http.client.HTTPConnection(s.api_host, s.api_port, timeout=10)

        def call(i: int) -> None:
            page = _page(i, size, len(refs))
            checks = [{"subject_ref": refs[n], "purpose": PURPOSE} for n in page]
            conn.request("POST", "/v1/purpose-checks", json.dumps({"checks": checks}), headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200:
                raise WrongAnswer(f"HTTP {response.status}")
            got = [d["allowed"] for d in answer["decisions"]]
            if got != [allowed[n] for n in page]:
                raise WrongAnswer("a decision disagrees with the seeded history")

        try:
            yield call
        finally:
            conn.close()

    return worker


def batch_sql_worker(s: Settings, refs: list[str], allowed: list[bool], size: int) -> Worker:
    digests, queries = _digests(s, refs), Queries(s)
    query = queries.purpose_checks_sql()

    def call_on(conn: psycopg.Connection[DictRow]) -> Call:
        def call(i: int) -> None:
            page = _page(i, size, len(refs))
            pairs = [(digests[n], PURPOSE) for n in page]
            rows = conn.execute(query, queries.purpose_checks_params(TENANT, pairs)).fetchall()
            got = [decide(PURPOSE, row).allowed for row in Queries.known(rows)]
            if got != [allowed[n] for n in page]:
                raise WrongAnswer("the view disagrees with the seeded history")

        return call

    return _straight(s, call_on)


def sql_worker(s: Settings, refs: list[str], allowed: list[bool]) -> Worker:
    digests, queries = _digests(s, refs), Queries(s)
    query = queries.purpose_check_sql()

    def call_on(conn: psycopg.Connection[DictRow]) -> Call:
        def call(i: int) -> None:
            n = i % len(refs)
            params = queries.purpose_check_params(TENANT, digests[n], PURPOSE)
            row = conn.execute(query, params).fetchone()
            if decide(PURPOSE, row).allowed is not allowed[n]:
                raise WrongAnswer("the view disagrees with the seeded history")

        return call

    return _straight(s, call_on)


def _digests(s: Settings, refs: list[str]) -> list[bytes]:
    _, lookup_key = s.require_keys()
    return [reference_digest(lookup_key, TENANT, ref) for ref in refs]


def _straight(s: Settings, call_on: Callable[[psycopg.Connection[DictRow]], Call]) -> Worker:
    """A worker that sends its SQL straight to PostgreSQL, a connection each."""

    @contextlib.contextmanager
    def worker() -> Iterator[Call]:
        with psycopg.connect(s.require_database(), autocommit=True, row_factory=dict_row) as conn:
            yield call_on(conn)

    return worker


@dataclass(frozen=True)
class Batches:
    """The batch route's run: pages of ``size`` pairs, ``rate`` pages a second."""

    size: int
    rate: float
    count: int


def run(
    s: Settings,
    *,
    subjects: int,
    rate: float,
    count: int,
    workers: int,
    batches: Batches | None = None,
) -> None:
    """Seeds, projects, then measures the API and the baseline; prints both."""
    print(f"seeding {subjects:,} subjects and projecting them ...", flush=True)
    refs, allowed = seed(s, subjects)
    project(s)
    token = api_key(s)
    # Warm-up at the measured rate and concurrency, so connection pools have grown and
    # statements are prepared before the clock runs.
    warmup = min(count, int(rate * WARMUP_S))
    batch_api: Summary | None = None
    with processes(s, ["serve"]) as live:
        wait_for_api(live)
        api = api_worker(live, token, refs, allowed)
        open_loop(api, rate=rate, count=warmup, workers=workers)
        through_api = open_loop(api, rate=rate, count=count, workers=workers)
        if batches is not None:
            pages = batch_api_worker(live, token, refs, allowed, batches.size)
            batch_api = _measure(pages, batches, workers)
    base = sql_worker(s, refs, allowed)
    open_loop(base, rate=rate, count=warmup, workers=workers)
    straight = open_loop(base, rate=rate, count=count, workers=workers)
    report(
        through_api,
        straight,
        rate=rate,
        workers=workers,
        servers=s.api_workers,
        memory=s.purpose_cache_subjects,
    )
    if batches is not None and batch_api is not None:
        sql_pages = batch_sql_worker(s, refs, allowed, batches.size)
        report_batches(batch_api, _measure(sql_pages, batches, workers), batches, workers)


def _measure(worker: Worker, batches: Batches, workers: int) -> Summary:
    warmup = min(batches.count, int(batches.rate * WARMUP_S))
    open_loop(worker, rate=batches.rate, count=warmup, workers=workers)
    return open_loop(worker, rate=batches.rate, count=batches.count, workers=workers)


def report_batches(api: Summary, sql: Summary, batches: Batches, workers: int) -> None:
    print(
        f"batch purpose checks, {api.count + api.errors:,} pages of {batches.size} pairs at "
        f"{batches.rate:,.0f}/s over {workers} keep-alive connections"
    )
    print(f"  API  POST /v1/purpose-checks  {api.line()}")
    print(f"  baseline: same SQL straight   {sql.line()}")
    verdict = "met" if api.p99_s <= BATCH_TARGET_P99_S and not api.errors else "NOT met"
    print(f"  target p99 <= {BATCH_TARGET_P99_S * 1000:.0f} ms for 100 pairs at 50/s: {verdict}")


def report(
    api: Summary, sql: Summary, *, rate: float, workers: int, servers: int = 1, memory: int = 0
) -> None:
    print(
        f"purpose check, {api.count + api.errors:,} requests at {rate:,.0f}/s "
        f"over {workers} keep-alive connections (latency from each request's scheduled start)"
        + (f"; ledger serve --workers {servers}" if servers > 1 else "")
        + (
            f"; answers from memory (LEDGER_PURPOSE_CACHE_SUBJECTS={memory:,})"
            if memory
            else "; one query per check (LEDGER_PURPOSE_CACHE_SUBJECTS=0)"
        )
    )
    print(f"  API  POST /v1/purpose-check   {api.line()}")
    print(f"  baseline: same SQL straight   {sql.line()}")
    at = max([r for r in TARGETS_P99_S if r <= rate], default=min(TARGETS_P99_S))
    target = TARGETS_P99_S[at]
    verdict = "met" if api.p99_s <= target and not api.errors else "NOT met"
    print(f"  target p99 <= {target * 1000:.0f} ms at {at:,.0f}/s: {verdict}")
