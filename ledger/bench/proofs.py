"""``ledger bench proofs``: Merkle proofs from the stored nodes, against building the tree.

Seeds a ledger as ``ledger bench replay`` does (new subjects, each granted, collected,
disclosed and withdrawn; a signed checkpoint at the end), then measures in the same run:

1. **building the tree from scratch** (the baseline): what a ledger without stored nodes does
   for every proof — every stored event's row read in the pages verification reads them,
   its leaf hashed and the root folded (``merkle.Frontier``: the floor of any rebuild); and
   the same into a whole ``merkle.Tree`` in memory with one inclusion proof from it. The
   implied rate is one proof per build;
2. **inclusion proofs** of random recorded events, one after another, as the API and the CLI
   serve them (``ledger.integrity.proofs.inclusion``: a few dozen stored nodes, no rehashing):
   proofs/s and latency p50/p95/p99/max;
3. **consistency proofs** between random pairs of tree sizes
   (``ledger.integrity.proofs.consistency``), likewise.

Every proof is checked outside the timed section: it must verify, and its roots must be the
ones the baseline's tree recomputed from the rows; one that fails makes the run fail.

Target: at 100,000 events, an inclusion proof well under 10 ms p99 from the stored nodes —
orders of magnitude below rebuilding the tree, and not growing with the ledger beyond log(n).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import sql

from ledger.bench.load import percentile
from ledger.bench.replay import seed
from ledger.integrity import proofs
from ledger.integrity.sources import BATCH
from ledger.process.runtime import open_reader
from ledger.process.settings import Settings
from ledger.storage import merkle
from ledger.storage.chain import Row
from ledger.storage.store import LedgerStore

TARGET_P99_MS = 10.0
T = TypeVar("T")


class ProofsFailed(RuntimeError):
    """A proof did not verify, or its root is not the tree's: the figures mean nothing."""


def _pages(store: LedgerStore) -> Iterator[list[Row]]:
    """Every stored event's row, in the pages and the form verification reads them."""
    start = 1
    while True:
        page = store.select_rows(start, BATCH)
        if page:
            yield page
        if len(page) < BATCH:
            return
        start = page[-1][0] + 1


def rebuild_root(store: LedgerStore) -> tuple[int, float, bytes]:
    """Baseline: read every row, hash its leaf, fold the root. (events, seconds, root)."""
    started = time.perf_counter()
    frontier = merkle.Frontier()
    for page in _pages(store):
        for row in page:
            frontier.add(merkle.leaf_hash(merkle.leaf(*row)))
    root = frontier.root()
    return frontier.size, time.perf_counter() - started, root


def rebuild_tree(store: LedgerStore, rng: random.Random) -> tuple[merkle.Tree, float, bool]:
    """Baseline: read every row into a whole tree in memory and prove one leaf from it.
    (the tree, seconds, whether that proof verifies)."""
    started = time.perf_counter()
    tree = merkle.Tree()
    for page in _pages(store):
        tree.extend([merkle.leaf_hash(merkle.leaf(*row)) for row in page])
    index = rng.randrange(tree.size) if tree.size else 0
    path = tree.inclusion(index) if tree.size else []
    elapsed = time.perf_counter() - started
    if not tree.size:
        return tree, elapsed, False
    digest = tree.nodes[(0, index)]
    return tree, elapsed, merkle.verify_inclusion(index, tree.size, digest, path, tree.root())


@dataclass(frozen=True)
class Timings:
    """Sequential calls: each one's latency, their sum (the checks between them left out),
    and the answers that were wrong."""

    latencies: list[float]
    seconds: float
    failed: int
    first_failure: str

    def line(self, label: str) -> str:
        n = len(self.latencies)
        rate = n / self.seconds if self.seconds else float("inf")
        ms = {q: percentile(self.latencies, q) * 1000 for q in (50, 95, 99)}
        text = (
            f"{label:<22}{n:>7,} proofs {rate:>8,.0f} proofs/s   p50 {ms[50]:6.2f} ms   "
            f"p95 {ms[95]:6.2f} ms   p99 {ms[99]:6.2f} ms   "
            f"max {max(self.latencies) * 1000:6.2f} ms   verified {n - self.failed:,}/{n:,}"
        )
        if self.failed:
            text += f"  FAILED (first: {self.first_failure})"
        return text

    @property
    def p99_s(self) -> float:
        return percentile(self.latencies, 99)


def timed(
    count: int, seconds: float, call: Callable[[int], T], check: Callable[[T], str]
) -> Timings:
    """``call(i)`` for i in 0..count-1, one after another, until ``seconds`` have passed;
    ``check`` (untimed) returns "" for a good answer, else why it is wrong."""
    latencies: list[float] = []
    failed, first_failure = 0, ""
    deadline = time.perf_counter() + seconds
    for i in range(count):
        before = time.perf_counter()
        answer = call(i)
        after = time.perf_counter()
        latencies.append(after - before)
        if wrong := check(answer):
            failed += 1
            first_failure = first_failure or wrong
        if after > deadline:
            break
    return Timings(latencies, sum(latencies), failed, first_failure)


def inclusions(
    store: LedgerStore, tree: merkle.Tree, rng: random.Random, count: int, seconds: float
) -> Timings:
    size = tree.size
    # Random leaves, resolved to their events' sequences before the clock starts.
    sequences = []
    for _ in range(count):
        sequence = store.leaf_sequence(rng.randrange(size))
        if sequence is None:
            raise ProofsFailed("the stored tree is missing a leaf the rows have")
        sequences.append(sequence)
    root = tree.root()

    def check(answer: proofs.Inclusion) -> str:
        if not answer.verifies():
            return f"the inclusion proof of sequence {answer.sequence} does not verify"
        if (answer.size, answer.root) != (size, root):
            return f"the proof of sequence {answer.sequence} is not against the rebuilt root"
        return ""

    return timed(count, seconds, lambda i: proofs.inclusion(store, sequences[i]), check)


def consistencies(
    store: LedgerStore, tree: merkle.Tree, rng: random.Random, count: int, seconds: float
) -> Timings:
    size = tree.size
    pairs = []
    for _ in range(count):
        first = rng.randint(1, size - 1)
        pairs.append((first, rng.randint(first + 1, size)))

    def check(answer: proofs.Consistency) -> str:
        where = f"from {answer.first} to {answer.second} leaves"
        if not answer.verifies():
            return f"the consistency proof {where} does not verify"
        if answer.first_root != tree.root(answer.first) or answer.second_root != tree.root(
            answer.second
        ):
            return f"the roots of the proof {where} are not the rebuilt tree's"
        return ""

    return timed(count, seconds, lambda i: proofs.consistency(store, *pairs[i]), check)


def merkle_rows(s: Settings) -> int:
    with psycopg.connect(s.require_database(), autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.merkle").format(sql.Identifier(s.database_schema))
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _rate(seconds: float) -> str:
    return f"{1 / seconds:,.2f} proofs/s" if seconds else "inf proofs/s"


def run(s: Settings, *, events: int, count: int, seconds: float, seed_value: int = 0) -> None:
    """Seeds the ledger, then :func:`measure`."""
    seed(s, events)
    measure(s, count=count, seconds=seconds, seed_value=seed_value)


def measure(s: Settings, *, count: int, seconds: float, seed_value: int = 0) -> None:
    """Prints the figures for the ledger as it is; raises :class:`ProofsFailed` (after them,
    if they were measured) when a proof or the stored tree is wrong."""
    seed_value = seed_value or time.time_ns() % 1_000_000_007
    rng = random.Random(seed_value)
    with closing(open_reader(s)) as reader:
        store = reader.store
        stored_size = store.tree_size()
        rows = merkle_rows(s)
        print(f"tree size {stored_size:,} leaves, {rows:,} stored merkle rows; seed {seed_value}")

        read, frontier_s, root = rebuild_root(store)
        print(
            f"{'baseline: rebuild root':<34}{read:>9,} events in {frontier_s:6.3f} s  "
            f"-> {_rate(frontier_s)}  (rows, leaf hashes, Frontier)"
        )
        tree, tree_s, ok = rebuild_tree(store, rng)
        print(
            f"{'baseline: rebuild Tree + 1 proof':<34}{tree.size:>9,} events in {tree_s:6.3f} s  "
            f"-> {_rate(tree_s)}  (whole tree in memory)  ok={ok}"
        )
        problems = []
        if not ok:
            problems.append("the proof from the rebuilt tree does not verify")
        if not read == tree.size == stored_size:
            problems.append(f"{read:,} rows but {stored_size:,} stored leaves")
        elif root != proofs.root(store, stored_size) or root != tree.root():
            problems.append("the stored tree's root is not the one rebuilt from the rows")
        if problems:
            raise ProofsFailed("; ".join(problems))
        if stored_size < 2:
            raise ProofsFailed(f"a tree of {stored_size} leaves is too small to measure")

        inclusion = inclusions(store, tree, rng, count, seconds)
        print(inclusion.line("inclusion proofs"))
        consistency = consistencies(store, tree, rng, count, seconds)
        print(consistency.line("consistency proofs"))

    p99_ms = inclusion.p99_s * 1000
    times = "\N{MULTIPLICATION SIGN}"
    print(
        f"inclusion proof p99 {p99_ms:.2f} ms vs rebuilding the tree {frontier_s:.3f} s "
        f"({frontier_s / inclusion.p99_s:,.0f}{times} faster); target at 100,000 events: "
        f"p99 well under {TARGET_P99_MS:.0f} ms ({'met' if p99_ms < TARGET_P99_MS else 'MISSED'}"
        f" at {stored_size:,})"
    )
    failures = [t.first_failure for t in (inclusion, consistency) if t.failed]
    if failures:
        raise ProofsFailed(
            f"{inclusion.failed + consistency.failed:,} proofs failed; first: {failures[0]}"
        )
