"""Contract cases for the hash chain, run against every recorder (see ``ledger_cases``)."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.application.service import Ledger
from ledger.integrity.sources import store_items
from ledger.integrity.verify import verify
from ledger.storage.chain import GENESIS, extend, stored
from tests.builders import REF, collect, disclose, erase, grant, withdraw
from tests.ledger_cases import BOB, OpenLedger, in_threads, ready, statuses


def links_and_events(ledger: Ledger) -> tuple[list[Any], list[Any]]:
    events = ledger.store.select_notifications(1, 100_000)
    return list(ledger.store.select_chain(1, 100_000)), list(events)


class ChainCases:
    def test_every_recorded_event_is_chained_in_ledger_order(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), collect(REF), grant(BOB), disclose(BOB)])
        ledger.record([withdraw(REF)])

        links, events = links_and_events(ledger)

        assert [k.sequence for k in links] == [e.id for e in events]
        assert links[0].previous == 0
        assert [k.previous for k in links[1:]] == [e.id for e in events[:-1]]
        recomputed = extend(
            None,
            [stored(e.id, e.originator_id, e.originator_version, e.topic, e.state) for e in events],
        )
        assert recomputed == links
        assert len({k.hash for k in links} | {GENESIS}) == len(links) + 1

    def test_the_chain_verifies_after_a_subject_is_shredded(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF), collect(REF), grant(BOB)])
        assert statuses(ledger.record([erase(REF)])) == ["recorded"]

        report = verify(store_items(ledger.store, batch=3))  # pages smaller than the ledger

        assert report.ok, report.problems
        links, events = links_and_events(ledger)
        assert report.events == report.links == len(events)
        assert report.recomputed_head == links[-1].hash

    def test_two_instances_recording_alternately_share_one_chain(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        other = open_same_store()
        for i in range(4):
            writer = ledger if i % 2 == 0 else other
            writer.record([collect(REF, categories=[f"category-{i}"]), grant(BOB)])

        assert verify(store_items(ledger.store)).ok

    def test_concurrent_writers_never_fork_the_chain(
        self, ledger: Ledger, open_same_store: OpenLedger
    ) -> None:
        ready(ledger)
        writers = [ledger, open_same_store(), open_same_store()]

        def write(writer: Ledger, n: int) -> None:
            for i in range(5):
                writer.record([grant(f"w{n}-{i}@example.com"), collect(f"w{n}@example.com")])

        in_threads(writers, write)
        report = verify(store_items(ledger.store))
        assert report.ok, report.problems
        assert report.events == len(ledger.store.select_notifications(1, 100_000))

    def test_a_refused_insert_leaves_no_link(self, ledger: Ledger) -> None:
        ready(ledger)
        ledger.record([grant(REF)])
        before, events = links_and_events(ledger)
        first = events[0]
        again = StoredEvent(first.originator_id, first.originator_version, first.topic, b"{}")
        with pytest.raises(IntegrityError):
            ledger.store.insert_events([again])
        ledger.record([collect(REF)])

        links, events = links_and_events(ledger)
        assert len(links) == len(before) + 1 == len(events)
        assert verify(store_items(ledger.store)).ok
