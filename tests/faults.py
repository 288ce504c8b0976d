"""Helpers of the fault injection suite (``tests/e2e/test_faults.py``): a steady producer, a
supervisor that SIGKILLs and restarts the ledger's processes, and the end-of-run checks.

The supervisor restarts a process only after *it* killed it. A process that exits by itself
(say because PostgreSQL went away) is restarted too, so the run goes on and reports
everything, but it is counted as an unexpected exit and fails the test: the processes are
expected to retry on their own.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ledger.client import LedgerClient
from ledger.wire import avro
from tests.e2e.test_processes import Process, ledger_command

PURPOSE = "newsletter"
ERASE_EVERY = 10  # every tenth subject asks for erasure after its four events

# What a process logs once it serves (and how many times: one line per view for `project`),
# and once it has done some work since it started.
READY = {
    "ingest": ("ingest_started", 1),
    "relay": ("relay_started", 1),
    "project": ("projection_started", 3),
    "notify": ("notifier_started", 1),
}
WORKING = {**READY, "ingest": ("batch_recorded", 1)}


class Producer(threading.Thread):
    """Sends valid sealed events for ever new subjects, ``rate`` events a second, until
    stopped: a grant, a collection, a disclosure and a withdrawal each, and for every tenth
    subject an erasure request after them. Keeps every event id it was handed back."""

    def __init__(self, client: LedgerClient, tenant: str, rate: float) -> None:
        super().__init__(name="fault-producer", daemon=True)
        self.client, self.tenant, self.rate = client, tenant, rate
        self.event_ids: list[str] = []
        self.erasures: list[str] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error
        self.client.flush(timeout=60)  # raises if the broker refused anything

    def run(self) -> None:
        try:
            subject, started = 0, time.monotonic()
            while not self._halt.is_set():
                self.event_ids.extend(self._subject(f"user-{subject}@example.com", subject))
                subject += 1
                due = started + len(self.event_ids) / self.rate
                self._halt.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # handed to stop()
            self.error = exc

    def _subject(self, ref: str, n: int) -> list[str]:
        c, who = self.client, {"tenant": self.tenant, "subject_ref": ref}
        ids = [
            c.grant_consent(
                **who,
                purpose=PURPOSE,
                consent_text_version="1",
                source="signup-form",
                ip_address="203.0.113.7",
            ),
            c.record_collection(
                **who, purpose=PURPOSE, categories=["contact.email"], source="data-subject"
            ),
            c.record_disclosure(
                **who,
                recipient=f"mailer-{n % 7}",
                purpose=PURPOSE,
                categories=["contact.email"],
                legal_basis="consent",
                reference=f"contract-{n}",
            ),
            c.withdraw_consent(**who, purpose=PURPOSE, source="app-settings"),
        ]
        if n % ERASE_EVERY == 0:
            erasure = c.request_erasure(**who, source="email")
            self.erasures.append(erasure)
            ids.append(erasure)
        return ids


@dataclass
class Supervised:
    """One long-running ``ledger`` command, restarted by the test as a supervisor would."""

    kind: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: Process | None = None
    offset: int = 0
    kills: int = 0
    exits: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        self.process = Process(ledger_command(*self.args), self.env, self.log)

    def ready(self, markers: dict[str, tuple[str, int]] = READY) -> bool:
        """Whether this incarnation logged its marker (default: that it serves)."""
        marker, times = markers[self.kind]
        with self.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().count(f'"{marker}"'.encode()) >= times

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.kills += 1
        self.start()

    def restart_if_exited(self) -> None:
        assert self.process is not None
        code = self.process.proc.poll()
        if code is None:
            return
        self.process.stop()  # closes its log
        self.exits.append(f"{self.kind} exited by itself with code {code}:\n{self.tail()}")
        self.start()

    def stop(self) -> int:
        assert self.process is not None
        return self.process.stop(timeout=60)

    def logged(self, event: str) -> int:
        """How many times, over every incarnation, the process logged ``event``."""
        return self.log.read_text(errors="replace").count(f'"event": "{event}"')

    def logged_sum(self, event: str, key: str) -> int:
        """The sum of ``key`` over the JSON lines of ``event``."""
        lines = self.log.read_text(errors="replace").splitlines()
        found = (json.loads(x) for x in lines if x.startswith("{") and f'"{event}"' in x)
        return sum(int(f.get(key, 0)) for f in found if f.get("event") == event)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Supervisor:
    def __init__(self, processes: list[Supervised], rng: random.Random) -> None:
        self.processes = {p.log.stem: p for p in processes}  # by name: two of a kind may run
        self.rng = rng

    def start(self) -> None:
        for p in self.processes.values():
            p.start()

    def pause(self, seconds: float) -> None:
        """Sleeps, restarting whatever exited meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            for p in self.processes.values():
                p.restart_if_exited()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(p.ready() for p in self.processes.values()):
            if time.monotonic() > deadline:
                slow = [p.kind for p in self.processes.values() if not p.ready()]
                raise AssertionError(f"not serving after {timeout:.0f} s: {slow}")
            self.pause(0.1)

    def kill_at_random(self, kills: int, gap: tuple[float, float]) -> None:
        """``kills`` SIGKILLs, each a random ``gap`` after the last, of a process at work (a
        kill during start-up, again and again, would test little): the least killed kind
        among those at work, ties broken at random. (A restarted ingest works again only once
        its group has rebalanced, some 10 s, so the others are killed more often.)"""
        for _ in range(kills):
            self.pause(self.rng.uniform(*gap))
            working: list[Supervised] = []
            while not working:
                working = [p for p in self.processes.values() if p.ready(WORKING)]
                self.pause(0.05)
            fewest = min(p.kills for p in working)
            self.rng.choice([p for p in working if p.kills == fewest]).kill()

    def kills(self) -> dict[str, int]:
        return {kind: p.kills for kind, p in self.processes.items()}

    def exits(self) -> list[str]:
        return [e for p in self.processes.values() for e in p.exits]

    def retries(self) -> dict[str, int]:
        """Failures each kind of process logged and retried by itself."""
        events = {
            "ingest": "batch_will_be_retried",
            "relay": "relay_will_retry",
            "project": "projection_will_retry",
        }
        return {kind: self.processes[kind].logged(e) for kind, e in events.items()}


class Ledger:
    """What the run asks the event store (plain SQL on the test's own connection)."""

    def __init__(self, database_url: str, schema: str, relay_position: str) -> None:
        self.url, self.schema, self.relay_position = database_url, schema, relay_position

    def _rows(self, query: str, *args: Any) -> list[Any]:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return conn.execute(
                sql.SQL(query).format(schema=sql.Identifier(self.schema)), args
            ).fetchall()

    def event_ids(self) -> Counter[str]:
        """How many events carry each event id (subject facts only)."""
        rows = self._rows(
            "SELECT convert_from(state, 'UTF8')::json->>'event_id' FROM {schema}.ledger_events "
            "WHERE topic LIKE %s AND topic NOT LIKE %s AND topic NOT LIKE %s",
            "%Subject.%",
            "%Registered",
            "%KeysShredded",  # the ledger's own, with ids of its own
        )
        return Counter(r[0] for r in rows)

    def kinds(self) -> Counter[str]:
        rows = self._rows(
            "SELECT split_part(topic, '.', 4), count(*) FROM {schema}.ledger_events GROUP BY 1"
        )
        return Counter({k: n for k, n in rows})

    def notification_ids(self) -> list[int]:
        return [
            r[0]
            for r in self._rows("SELECT notification_id FROM {schema}.ledger_events ORDER BY 1")
        ]

    def head(self) -> int:
        return int(
            self._rows("SELECT coalesce(max(notification_id), 0) FROM {schema}.ledger_events")[0][0]
        )

    def relay(self) -> int:
        rows = self._rows(
            "SELECT position FROM {schema}.positions WHERE name = %s", self.relay_position
        )
        return int(rows[0][0]) if rows else 0

    def views(self, names: list[str]) -> dict[str, int]:
        """Each view's tracking position (views live in ``<schema>_<name>``)."""
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return {n: _one(conn, f"{self.schema}_{n}", _TRACKED) for n in names}

    def rejected(self) -> int:
        rows = self._rows(
            "SELECT coalesce(sum(count), 0) FROM {schema}.ingest_counts WHERE outcome = 'rejected'"
        )
        return int(rows[0][0])


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, tick: Callable[[float], None]
) -> float:
    """Waits (through ``tick``, which keeps supervising) until ``condition``; returns seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        tick(0.25)
    return time.monotonic() - started


def summary(counts: dict[str, Any]) -> str:
    return json.dumps(counts, indent=2, default=str)


_TRACKED = "SELECT coalesce(max(notification_id), 0) FROM {}.tracking"


def _one(conn: psycopg.Connection[Any], schema: str, query: str) -> int:
    row = conn.execute(sql.SQL(query).format(sql.Identifier(schema))).fetchone()
    return int(row[0]) if row else 0


def view_rows(database_url: str, schema: str) -> dict[str, list[str]]:
    """Every row of every table of a view but its tracking table, as sorted JSON texts,
    without the position each row was last changed at (it depends on how the events were
    batched, not on what they say)."""
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name <> 'tracking' ORDER BY 1",
            [schema],
        ).fetchall()
        return {
            t: sorted(
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT (to_jsonb(t) - 'position')::text FROM {}.{} t").format(
                        sql.Identifier(schema), sql.Identifier(t)
                    )
                )
            )
            for (t,) in tables
        }


@dataclass
class TopicCheck:
    """The ledger topic as read back: records per partition, in offset order, decoded."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    sequences: set[int] = field(default_factory=set)

    def add(self, raw: list[Any]) -> None:
        for r in raw[len(self.records) :]:
            record = avro.decode(r.value)[1]
            self.records.append((r.partition, record))
            self.sequences.add(int(record["sequence"]))

    @property
    def duplicates(self) -> int:
        return len(self.records) - len(self.sequences)

    def problems(self, notification_ids: list[int]) -> list[str]:
        found: list[str] = []
        if self.sequences != set(notification_ids):
            missing = sorted(set(notification_ids) - self.sequences)
            extra = sorted(self.sequences - set(notification_ids))
            found.append(f"sequences differ: missing {missing[:10]}, not in ledger {extra[:10]}")
        first: dict[int, dict[str, Any]] = {}
        last_in: dict[int, int] = {}
        home: dict[str, int] = {}
        for partition, record in self.records:
            seq = int(record["sequence"])
            if home.setdefault(record["aggregate_id"], partition) != partition:
                found.append(f"aggregate {record['aggregate_id']} in two partitions")
            if seq in first:
                if first[seq] != record:
                    found.append(f"sequence {seq} published twice with different contents")
                continue
            first[seq] = record
            if seq <= last_in.get(partition, 0):
                found.append(f"partition {partition}: {seq} after {last_in[partition]}")
            last_in[partition] = seq
        previous = 0
        for seq in sorted(first):
            chain = first[seq].get("chain")
            if chain is None or chain["previous"] != previous:
                got = None if chain is None else chain["previous"]
                found.append(f"sequence {seq}: chain.previous {got}, expected {previous}")
            previous = seq
        return found
