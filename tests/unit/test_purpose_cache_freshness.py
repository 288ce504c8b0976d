"""The purpose-check memory's freshness rule, with probes scripted in memory: a check answers
only after a probe that started after it arrived, checks that arrive together share one, and
a probe drops exactly what changed (or everything, when the view was swapped or went back)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from projections.api.purpose_cache import (
    ERASED,
    MAX_CHANGES,
    MAX_LEDGER_SCAN,
    PROBES_IN_FLIGHT,
    Catalogue,
    Known,
    Probe,
    PurposeCache,
    decision,
)


class _Queries:
    def tracking_table(self, view: str) -> str:
        return f'"ledger_{view}".tracking'


class ScriptedCache(PurposeCache):
    """Probes that wait for the test to let them finish, and record when they started."""

    def __init__(self) -> None:
        super().__init__(_Queries(), connect=None, capacity=10)  # type: ignore[arg-type]
        self.gates: list[asyncio.Future[Probe]] = []

    async def _retrying(self, read: Any) -> Any:
        return await read(None)

    async def _probe(self, conn: Any) -> Probe:
        gate: asyncio.Future[Probe] = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        return await gate


def probe(
    position: int,
    *,
    subjects: tuple[Any, ...] = (),
    tenants: tuple[str, ...] = (),
    generation: int = 1,
    head: int = 0,
    since: int = 0,
    head_since: int = 0,
) -> Probe:
    return Probe(generation, position, head, list(subjects), list(tenants), since, head_since)


async def early_and_late(cache: PurposeCache) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """A check, then another once the first one's probe runs (it may predate the second's
    commit, so the second starts a probe of its own)."""
    early = asyncio.create_task(cache.fresh())
    await settle()
    late = asyncio.create_task(cache.fresh())
    await settle()
    return early, late


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_checks_beyond_the_probes_in_flight_share_the_next_one() -> None:
    async def scenario() -> None:
        cache = ScriptedCache()
        first = [asyncio.create_task(cache.fresh()) for _ in range(PROBES_IN_FLIGHT)]
        await settle()
        assert len(cache.gates) == PROBES_IN_FLIGHT  # each started its own
        more = [asyncio.create_task(cache.fresh()) for _ in range(3)]
        await settle()
        assert len(cache.gates) == PROBES_IN_FLIGHT  # they wait for a free slot
        cache.gates[0].set_result(probe(5))
        await settle()
        assert first[0].done() and not any(t.done() for t in more)
        assert len(cache.gates) == PROBES_IN_FLIGHT + 1  # one probe for the three
        cache.gates[-1].set_result(probe(6))
        await asyncio.gather(*more)
        for gate in cache.gates[1:-1]:
            gate.set_result(probe(6))
        await asyncio.gather(*first)
        assert cache.position == 6 and cache.stats["emptied"] == 0

    asyncio.run(scenario())


def test_a_check_that_arrives_during_a_probe_is_not_answered_by_it() -> None:
    async def scenario() -> None:
        cache = ScriptedCache()
        early, late = await early_and_late(cache)
        assert len(cache.gates) == 2
        cache.gates[0].set_result(probe(5))
        await settle()
        assert early.done() and not late.done()
        cache.gates[1].set_result(probe(6))
        await late
        assert cache.position == 6

    asyncio.run(scenario())


def test_a_probe_overtaken_by_a_later_one_only_drops() -> None:
    async def scenario() -> None:
        cache, a, b = filled()
        early, late = await early_and_late(cache)
        cache.gates[1].set_result(probe(12, subjects=(b,)))  # the later one finishes first
        await late
        cache.gates[0].set_result(probe(11, subjects=(a,)))
        await early
        assert cache.position == 12 and cache.stats["emptied"] == 0
        assert set(holding(cache)) == {b"gone"}

    asyncio.run(scenario())


def test_a_failed_probe_fails_its_checks_and_the_next_check_probes_again() -> None:
    async def scenario() -> None:
        cache = ScriptedCache()
        first = asyncio.create_task(cache.fresh())
        await settle()
        cache.gates[0].set_exception(OSError("connection refused"))
        with pytest.raises(OSError):
            await first
        second = asyncio.create_task(cache.fresh())
        await settle()
        cache.gates[1].set_result(probe(3))
        await second
        assert cache.position == 3

    asyncio.run(scenario())


def known(subject_id: Any) -> Known:
    return Known(subject_id, None, None, {})


def holding(cache: PurposeCache) -> dict[bytes, Any]:
    return {digest: entry for (_, digest), entry in cache.entries.items()}


def filled() -> tuple[ScriptedCache, Any, Any]:
    cache = ScriptedCache()
    cache.apply(probe(10, head=100))
    a, b = uuid4(), uuid4()
    cache._keep("acme", b"a", known(a))
    cache._keep("acme", b"b", known(b))
    cache._keep("acme", b"gone", ERASED)
    cache.catalogues["acme"] = {"newsletter": (False, "CONSENT", "e1")}
    cache.catalogues["globex"] = {}
    return cache, a, b


def test_a_probe_drops_the_subjects_and_catalogues_that_changed() -> None:
    cache, a, b = filled()
    cache.apply(probe(12, subjects=(a, uuid4()), tenants=("globex",), head=103))
    assert set(holding(cache)) == {b"b", b"gone"}
    assert a not in cache.by_subject and b in cache.by_subject
    assert set(cache.catalogues) == {"acme"}
    assert (cache.position, cache.head) == (12, 103)


@pytest.mark.parametrize(
    "why",
    [
        probe(12, generation=2),  # a rebuild swapped in new tables
        probe(9),  # the view went back
        probe(12, subjects=tuple(uuid4() for _ in range(MAX_CHANGES + 1))),
        probe(12, head=100 + MAX_LEDGER_SCAN + 1),  # too far behind to scan the ledger
        probe(12, since=2**62, head_since=2**62),  # began while memory held nothing
        probe(12, since=11),  # read changes after a later position than memory's
    ],
    ids=["rebuilt", "went-back", "too-many-changes", "ledger-too-far", "began-empty", "gap"],
)
def test_memory_is_emptied_when_it_cannot_be_picked_over(why: Probe) -> None:
    cache, _, _ = filled()
    cache.apply(why)
    assert not cache.entries and not cache.by_subject and not cache.catalogues
    assert cache.position == why.position and cache.stats["emptied"] == 1


def test_the_least_recently_kept_goes_first() -> None:
    cache = ScriptedCache()
    cache.capacity = 2
    ids = [uuid4() for _ in range(3)]
    for i, subject_id in enumerate(ids):
        cache._keep("acme", bytes([i]), known(subject_id))
    assert list(holding(cache)) == [b"\x01", b"\x02"]
    assert set(cache.by_subject) == set(ids[1:])


def test_decisions_from_memory() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    subject = Known(uuid4(), None, None, {"newsletter": ("withdrawn", "2", "w1", at)})
    catalogue: Catalogue = {
        "newsletter": (False, "CONSENT", "p1", False, False),
        "billing": (False, "CONTRACT", "p2", False, False),
    }
    withdrawn = decision("newsletter", catalogue, subject)
    assert (withdrawn.allowed, withdrawn.reason, withdrawn.event_id) == (
        False,
        "consent_withdrawn",
        "w1",
    )
    assert decision("billing", catalogue, subject).reason == "legal_basis"
    assert decision("billing", catalogue, ERASED).reason == "subject_erased"
    assert decision("newsletter", catalogue, None).reason == "no_consent"
    assert decision("other", catalogue, subject).reason == "unknown_purpose"
    subject.erasure_requested_at, subject.erasure_event_id = at, "r1"
    assert decision("billing", catalogue, subject).reason == "erasure_requested"


def test_restrictions_and_objections_from_memory() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    catalogue: Catalogue = {
        "analytics": (False, "LEGITIMATE_INTERESTS", "p1", False, False),
        "offers": (False, "LEGITIMATE_INTERESTS", "p2", True, False),
        "archive": (False, "LEGAL_OBLIGATION", "p3", False, True),
    }
    subject = Known(uuid4(), None, None, {})
    subject.restrictions = ((("analytics",), "r1", at), ((), "r2", at))
    restricted = decision("analytics", catalogue, subject)
    assert (restricted.allowed, restricted.reason, restricted.event_id) == (
        False,
        "processing_restricted",
        "r1",
    )
    assert decision("offers", catalogue, subject).event_id == "r2"  # covers every purpose
    assert decision("archive", catalogue, subject).reason == "legal_basis"  # allowed anyway
    subject.restrictions = ()
    subject.objections = {"analytics": ("o1", at, None), "offers": ("o2", at, "g2")}
    assert decision("analytics", catalogue, subject).reason == "objected"
    assert decision("offers", catalogue, subject).reason == "objected"  # absolute
    subject.objections["analytics"] = ("o1", at, "g1")
    assert decision("analytics", catalogue, subject).reason == "legal_basis"
