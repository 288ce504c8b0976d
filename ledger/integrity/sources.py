"""Where verification reads the chain from: the event store, or an export (JSON lines).

The export format (``ledger audit export``) is what ``tools/verify_chain.py`` reads, one JSON
object per line, in ledger order (``docs/audit.md``)::

    {"sequence": 7, "originator_id": "…", "originator_version": 2, "topic": "…",
     "state": "<base64 of the stored bytes>", "previous": 5, "hash": "<64 hex>"}

A position whose event is missing has ``"event": null`` instead of the event's columns; one
whose link is missing has ``"previous"`` and ``"hash"`` null.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from ledger.integrity.chain import Link, Stored, stored
from ledger.integrity.verify import Item
from ledger.store import LedgerStore

BATCH = 5_000


def _events(store: LedgerStore, batch: int, start: int, stop: int | None) -> Iterator[Stored]:
    while True:
        page = store.select_stored(start, batch, stop)
        yield from page
        if len(page) < batch:
            return
        start = page[-1].sequence + 1


def _links(store: LedgerStore, batch: int, start: int, stop: int | None) -> Iterator[Link]:
    while True:
        page = store.select_chain(start, batch)
        yield from (k for k in page if stop is None or k.sequence <= stop)
        if stop is not None and page and page[-1].sequence >= stop:
            return
        if len(page) < batch:
            return
        start = page[-1].sequence + 1


def store_items(
    store: LedgerStore, batch: int = BATCH, *, start: int = 1, stop: int | None = None
) -> Iterator[Item]:
    """Events and links from ``start`` to ``stop`` (inclusive), merged by notification id,
    read in pages (keyset pagination on the primary keys)."""
    events = _events(store, batch, start, stop)
    links = _links(store, batch, start, stop)
    event, link = next(events, None), next(links, None)
    while event is not None or link is not None:
        seq = min(x.sequence for x in (event, link) if x is not None)
        here_event = event if event is not None and event.sequence == seq else None
        here_link = link if link is not None and link.sequence == seq else None
        yield Item(seq, here_event, here_link)
        if here_event is not None:
            event = next(events, None)
        if here_link is not None:
            link = next(links, None)


def export_line(item: Item) -> str:
    body: dict[str, Any] = {"sequence": item.sequence}
    if item.event is None:
        body["event"] = None
    else:
        body |= {
            "originator_id": str(item.event.originator_id),
            "originator_version": item.event.originator_version,
            "topic": item.event.topic,
            "state": base64.b64encode(item.event.state).decode("ascii"),
        }
    body["previous"] = item.link.previous if item.link else None
    body["hash"] = item.link.hash.hex() if item.link else None
    return json.dumps(body, separators=(",", ":"))


def item_from_line(line: str) -> Item:
    body = json.loads(line)
    seq = int(body["sequence"])
    event = None
    if body.get("event", ...) is not None:
        event = stored(
            seq,
            body["originator_id"],
            int(body["originator_version"]),
            body["topic"],
            base64.b64decode(body["state"], validate=True),
        )
    link = None
    if body.get("hash") is not None:
        link = Link(seq, int(body["previous"]), bytes.fromhex(body["hash"]))
    return Item(seq, event, link)
