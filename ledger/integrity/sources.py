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

from ledger.integrity.verify import Item, Page
from ledger.storage.chain import Link, stored
from ledger.storage.store import LedgerStore

BATCH = 5_000


class StoreItems:
    """The items of a store from ``start`` to ``stop`` (inclusive), read in pages (keyset
    pagination on the primary keys). Iterating gives :class:`Item` s; a verifier reads
    :meth:`pages` instead, and checks a page that holds no surprise in one tight loop."""

    def __init__(self, store: LedgerStore, batch: int, start: int, stop: int | None) -> None:
        self.store, self.batch, self.start, self.stop = store, batch, start, stop

    def pages(self) -> Iterator[Page]:
        start = self.start
        while True:
            rows = self.store.select_rows(start, self.batch, self.stop)
            last = len(rows) < self.batch
            upto = self.stop if last else rows[-1][0]
            yield Page(rows, self._links(start, upto))
            if last or upto is None:
                return
            start = upto + 1

    def _links(self, start: int, upto: int | None) -> list[Link]:
        """Every link from ``start`` to ``upto``: as many as the page's events, unless
        events are missing."""
        links: list[Link] = []
        while True:
            got = self.store.select_chain(start, self.batch, upto)
            links += got
            if len(got) < self.batch:
                return links
            start = got[-1].sequence + 1

    def __iter__(self) -> Iterator[Item]:
        for page in self.pages():
            yield from page.items()


def store_items(
    store: LedgerStore, batch: int = BATCH, *, start: int = 1, stop: int | None = None
) -> StoreItems:
    """Events and links from ``start`` to ``stop`` (inclusive), merged by notification id."""
    return StoreItems(store, batch, start, stop)


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
