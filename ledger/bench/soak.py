"""``ledger bench soak``: a steady load for minutes, with queries, watching memory and lag.

``ledger ingest``, ``ledger relay``, ``ledger project`` and ``ledger serve`` run as their own
processes on a fresh schema and topics. For ``minutes``, a producer sends sealed events at a
fixed rate (each new subject is granted, has data collected and disclosed, and is
withdrawn), while a client asks the purpose check at a fixed rate. Every ``sample_s`` a line
shows each process's resident memory and how far ingest
(events produced but not recorded), the relay (recorded but not published) and the slowest
view (recorded but not applied) are behind.

At the end the producer stops and the run waits (bounded) for everything to drain. The
verdicts: **memory flat** — in the second half of the run no process grew by more than 5 %
(and 5 MB): a process may fill its bounded caches early on (the ingest consumer keeps up to
``LEDGER_SUBJECT_CACHE_SIZE`` subjects loaded, 50,000 by default; the API up to
``LEDGER_PURPOSE_CACHE_SUBJECTS`` references' purpose-check answers, 50,000 by default), but
must then stop growing (``subject_cache`` sets both, so they fill early); **lag bounded** —
every lag drained and the largest lag in the second half is no larger than twice the first
half's (a pipeline that falls steadily behind fails this); **no errors** — no query or
process failed and nothing valid was rejected.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ledger.bench.freshness import with_topics
from ledger.bench.load import Summary
from ledger.bench.query import api_key
from ledger.bench.setup import PURPOSE, TENANT, child_env, ingest_key, wait_for_api
from ledger.client import LedgerClient
from ledger.plumbing import children
from ledger.process.settings import Settings
from ledger.servers.embedded import free_port
from projections.api.app import prepare
from projections.status import parse_status, status_query

PROCESSES = ("ingest", "relay", "project", "serve")
EVENTS_PER_SUBJECT = 4
DRAIN_TIMEOUT_S = 120.0
GROWTH_LIMIT = 0.05
GROWTH_FLOOR_MB = 5.0


@dataclass
class Sample:
    at_s: float
    rss_mb: dict[str, float]
    produced: int
    ingest_lag: int
    relay_lag: int
    view_lag: int


@dataclass
class Counters:
    produced: int = 0
    send_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    query_errors: int = 0
    first_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            self.query_errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"[:200]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (0 once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _every(rate: float, stop: threading.Event, action: Callable[[int], None]) -> None:
    """Calls ``action(i)`` at ``rate`` per second until ``stop``; never bursts to catch up
    by more than one second's worth."""
    start = time.perf_counter()
    i = 0
    while not stop.is_set():
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            stop.wait(delay)
        elif -delay > 1.0:
            start, i = time.perf_counter(), 0
            continue
        action(i)
        i += 1


def produce(s: Settings, rate: float, stop: threading.Event, out: Counters) -> None:
    run = uuid.uuid4().hex[:6]
    with LedgerClient(
        s.require_kafka(), producer="soak", topic=s.topics.ingest, ingest_key=ingest_key(s)
    ) as client:

        def send(i: int) -> None:
            ref = f"soak-{run}-{i // EVENTS_PER_SUBJECT}@example.com"
            step = i % EVENTS_PER_SUBJECT
            common = {"tenant": TENANT, "subject_ref": ref}
            if step == 0:
                client.grant_consent(
                    **common, purpose=PURPOSE, consent_text_version="1", source="soak"
                )
            elif step == 1:
                client.record_collection(
                    **common, purpose=PURPOSE, categories=["contact.email"], source="soak"
                )
            elif step == 2:
                client.record_disclosure(
                    **common,
                    recipient="Mailer Co",
                    purpose=PURPOSE,
                    categories=["contact.email"],
                    legal_basis="CONSENT",
                    reference="DPA-1",
                )
            else:
                client.withdraw_consent(**common, purpose=PURPOSE, source="soak")
            out.produced += 1

        _every(rate, stop, send)
        client.flush()


def query(s: Settings, token: str, rate: float, stop: threading.Event, out: Counters) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(s.api_host, s.api_port, timeout=10)

    def ask(i: int) -> None:
        body = json.dumps({"subject_ref": f"soak-query-{i % 500}@example.com", "purpose": PURPOSE})
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/purpose-check", body, headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200 or "allowed" not in answer:
                raise RuntimeError(f"purpose check answered HTTP {response.status}")
        except Exception as exc:
            out.failed(exc)
            conn.close()
            return
        with out.lock:
            out.latencies.append(time.perf_counter() - started)

    try:
        _every(rate, stop, ask)
    finally:
        conn.close()


class Probe:
    """Reads the lags from the database: produced - recorded, head - relay, head - views."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.conn = psycopg.connect(s.require_database(), autocommit=True)
        self.status = status_query(s)

    def lags(self, produced: int) -> tuple[int, int, int, int]:
        schema = self.s.database_schema
        counts = self.conn.execute(
            f'SELECT outcome, sum(count) FROM "{schema}".ingest_counts GROUP BY 1'
        ).fetchall()
        by_outcome = {outcome: int(n) for outcome, n in counts}
        relay = self.conn.execute(
            f'SELECT position FROM "{schema}".positions WHERE name = %s',
            [f"relay:{self.s.topics.ledger}"],
        ).fetchone()
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        row = cur.execute(self.status).fetchone()
        assert row is not None
        views = parse_status(row)
        head = views[0].head if views else 0
        handled = by_outcome.get("recorded", 0) + by_outcome.get("duplicate", 0)
        return (
            max(0, produced - handled - by_outcome.get("rejected", 0)),
            max(0, head - (int(relay[0]) if relay else 0)),
            max((v.lag for v in views), default=0),
            by_outcome.get("rejected", 0),
        )

    def close(self) -> None:
        self.conn.close()


def run(
    s: Settings,
    *,
    minutes: float,
    rate: float,
    query_rate: float,
    sample_s: float,
    subject_cache: int | None = None,
) -> None:
    s = with_topics(s).with_overrides(api_port=free_port())
    prepare(s)
    token = api_key(s)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    extra = (
        {
            "LEDGER_SUBJECT_CACHE_SIZE": str(subject_cache),
            "LEDGER_PURPOSE_CACHE_SUBJECTS": str(subject_cache),
        }
        if subject_cache
        else {}
    )
    log = Path(tempfile.gettempdir()) / f"ledger-soak-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as output:
        try:
            for name in PROCESSES:
                procs[name] = children.spawn(name, child_env(s, **extra), output=output)
            wait_for_api(s)
            samples, counters, rejected = _drive(
                s, token, procs, minutes, rate, query_rate, sample_s
            )
        finally:
            children.stop(procs.values())
    deaths = [n for n, p in procs.items() if p.returncode not in (0, None, -15)]
    report(samples, counters, rejected, deaths, rate=rate, query_rate=query_rate, log=log)


def _drive(
    s: Settings,
    token: str,
    procs: dict[str, subprocess.Popen[bytes]],
    minutes: float,
    rate: float,
    query_rate: float,
    sample_s: float,
) -> tuple[list[Sample], Counters, int]:
    counters = Counters()
    stop = threading.Event()
    threads = [
        threading.Thread(target=produce, args=(s, rate, stop, counters), daemon=True),
        threading.Thread(target=query, args=(s, token, query_rate, stop, counters), daemon=True),
    ]
    probe = Probe(s)
    samples: list[Sample] = []
    started = time.monotonic()
    print(f"soak: {rate:g} events/s and {query_rate:g} purpose checks/s for {minutes:g} min")
    print(
        f"{'t (s)':>6} {'produced':>9} {'ingest lag':>10} {'relay lag':>9} {'view lag':>8}  RSS MB"
    )
    try:
        for thread in threads:
            thread.start()
        while time.monotonic() - started < minutes * 60:
            time.sleep(min(sample_s, max(0.1, minutes * 60 - (time.monotonic() - started))))
            samples.append(_sample(probe, procs, counters, started))
            _print(samples[-1])
            if any(p.poll() is not None for p in procs.values()):
                break
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            last = _sample(probe, procs, counters, started)
            if not (last.ingest_lag or last.relay_lag or last.view_lag):
                break
            time.sleep(1.0)
        samples.append(last)
        _print(last)
        rejected = probe.lags(counters.produced)[3]
    finally:
        probe.close()
    return samples, counters, rejected


def _sample(
    probe: Probe, procs: dict[str, subprocess.Popen[bytes]], c: Counters, started: float
) -> Sample:
    ingest, relay, views, _ = probe.lags(c.produced)
    rss = {name: rss_mb(p.pid) for name, p in procs.items()}
    return Sample(time.monotonic() - started, rss, c.produced, ingest, relay, views)


def _print(x: Sample) -> None:
    memory = "  ".join(f"{n} {mb:.0f}" for n, mb in x.rss_mb.items())
    print(
        f"{x.at_s:6.0f} {x.produced:9,} {x.ingest_lag:10,} {x.relay_lag:9,} {x.view_lag:8,}  "
        f"{memory}"
    )


def report(
    samples: list[Sample],
    c: Counters,
    rejected: int,
    deaths: list[str],
    *,
    rate: float,
    query_rate: float,
    log: Path,
) -> None:
    warm = samples[min(1, len(samples) - 1)]
    middle = samples[len(samples) // 2]
    last = samples[-1]
    print("memory (RSS) after warm-up -> half-way -> at the end, and growth in the second half:")
    flat = True
    for name in PROCESSES:
        before, half, after = (x.rss_mb.get(name, 0.0) for x in (warm, middle, last))
        growth = after - half
        minutes = max(1e-9, (last.at_s - middle.at_s) / 60)
        flat &= growth <= max(GROWTH_FLOOR_MB, half * GROWTH_LIMIT)
        print(
            f"  {name:<8} {before:7.1f} -> {half:7.1f} -> {after:7.1f} MB  "
            f"({growth:+.1f} MB, {growth / minutes:+.2f} MB/min)"
        )
    during = samples[:-1] or samples
    half = max(1, len(during) // 2)
    first_half = max(max(x.ingest_lag, x.relay_lag, x.view_lag) for x in during[:half])
    second_half = max(max(x.ingest_lag, x.relay_lag, x.view_lag) for x in during[half:] or [last])
    drained = not (last.ingest_lag or last.relay_lag or last.view_lag)
    bounded = drained and second_half <= max(2 * first_half, rate)
    print(
        f"largest lag: first half {first_half:,} events, second half {second_half:,} events; "
        f"drained at the end: {'yes' if drained else 'NO'}"
    )
    queries = Summary.of(c.latencies, c.query_errors, c.first_error) if c.latencies else None
    print(f"purpose checks at {query_rate:g}/s: {queries.line() if queries else 'none answered'}")
    errors = c.query_errors + c.send_errors + rejected + len(deaths)
    print(
        f"events produced {c.produced:,} at {rate:g}/s; rejected {rejected:,}; "
        f"query errors {c.query_errors:,}; processes that died: {', '.join(deaths) or 'none'}"
    )
    print(
        f"verdict: memory flat {'yes' if flat else 'NO'}; lag bounded "
        f"{'yes' if bounded else 'NO'}; errors {errors:,} (process output: {log})"
    )
