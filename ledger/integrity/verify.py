"""Verifies the chain over any source of (event, link) pairs in ledger order.

Rules this module keeps:

- **Two checks per event.** The *link check* recomputes each event's hash from its stored
  columns and its predecessor's *stored* hash, so a problem is reported where it is, and once
  (a changed event does not make every later one fail). The *recomputation* runs the chain
  from genesis over the events as they are, ignoring stored hashes; a checkpoint holds only if
  the recomputed hash at its sequence is the head it signed. Rewriting every stored hash after
  a change passes the link check, never a checkpoint.
- **Reasons name what the evidence shows:** ``changed`` (stored columns differ from what was
  chained: content edited or events swapped), ``reordered`` (also an aggregate's versions out of
  order), ``deleted`` (a link without its event, or a link naming a missing predecessor),
  ``inserted`` (an event that is not in the chain, or that the next link skips),
  ``unchained`` (an event without a link).
- **The Merkle log is recomputed in the same pass** (from genesis: leaf by leaf over the
  events as they are, ``ledger.storage.merkle``); at each watched sequence the report keeps
  the tree's (size, root) there, which a checkpoint's tree head must equal.
- **Streaming.** Memory grows with the number of aggregates, not of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ledger.storage.chain import GENESIS, Link, Row, Stored, link_hash, stored
from ledger.storage.merkle import Frontier, leaf, leaf_hash, link_and_leaf

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    position: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Item:
    """What a source holds at one position: the event, its link, or both."""

    sequence: int
    event: Stored | None
    link: Link | None


@dataclass(frozen=True)
class Page:
    """The events and the links a source holds from one position to another, in order."""

    rows: list[Row]
    links: list[Link]

    def items(self) -> Iterator[Item]:
        """The page's positions in order, each with its event, its link, or both."""
        rows, links = self.rows, self.links
        r = k = 0
        while r < len(rows) or k < len(links):
            row = rows[r] if r < len(rows) else None
            link = links[k] if k < len(links) else None
            if row is not None and (link is None or row[0] <= link.sequence):
                seq = row[0]
            else:
                assert link is not None
                seq = link.sequence
            here_row = row if row is not None and row[0] == seq else None
            here_link = link if link is not None and link.sequence == seq else None
            yield Item(seq, None if here_row is None else stored(*here_row), here_link)
            r += here_row is not None
            k += here_link is not None


class Paged(Protocol):
    """A source that can also be read a page at a time (``sources.StoreItems``)."""

    def pages(self) -> Iterable[Page]: ...


@dataclass
class Report:
    events: int = 0
    links: int = 0
    last: int = 0
    last_event: int = 0
    recomputed_head: bytes = GENESIS
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    recomputed_at: dict[int, bytes] = field(default_factory=dict)
    tree: Frontier = field(default_factory=Frontier)  # over the events fed (from genesis)
    tree_at: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # watched: (size, root)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.position) if self.problems else None


class ChainVerifier:
    """Feed it every item in ledger order; read :attr:`report` at the end. ``watch`` names
    sequences (checkpoints) whose recomputed hash the report keeps. ``start`` continues from
    a trusted (sequence, head), e.g. a checkpoint, instead of genesis."""

    def __init__(self, watch: Iterable[int] = (), start: tuple[int, bytes] | None = None) -> None:
        sequence, head = start or (0, GENESIS)
        self.report = Report(recomputed_head=head, last=sequence, last_event=sequence)
        self._watch = set(watch)
        self._stored_prev = Link(sequence, 0, head)
        self._versions: dict[str, int] = {}  # by the originator id's canonical text

    def _problem(self, position: int, reason: str, detail: str) -> None:
        self.report.problem_count += 1
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(position, reason, detail))

    def feed(self, item: Item) -> None:
        self.report.last = item.sequence
        if item.event is None and item.link is None:
            self._problem(item.sequence, "unchained", "a record without stored form or link")
            return
        if item.event is None:
            self._problem(item.sequence, "deleted", "a chain link without its event")
            if item.link is not None:
                self._stored_prev = item.link
            return
        before = (self.report.last_event, self.report.recomputed_head)
        out_of_order = self._recompute(item.event)
        if item.link is None:
            self._problem(item.sequence, "unchained", "an event without a chain link")
            return
        self.report.links += 1
        prev = self._stored_prev
        # While the stored chain agrees with the recomputed one (every link so far), the
        # link this event should have is the hash just recomputed: not hashed a second time.
        expected = self.report.recomputed_head if (prev.sequence, prev.hash) == before else None
        self._check_link(item.event, item.link, out_of_order, expected)
        self._stored_prev = item.link

    def _recompute(self, event: Stored) -> bool:
        report = self.report
        report.recomputed_head = link_hash(report.recomputed_head, event, report.last_event)
        report.last_event = event.sequence
        report.events += 1
        report.tree.add(
            leaf_hash(
                leaf(
                    event.sequence,
                    str(event.originator_id),
                    event.originator_version,
                    event.topic,
                    event.state,
                )
            )
        )
        if event.sequence in self._watch:
            report.recomputed_at[event.sequence] = report.recomputed_head
            report.tree_at[event.sequence] = (report.tree.size, report.tree.root())
        originator = str(event.originator_id)
        seen = self._versions.get(originator, 0)
        self._versions[originator] = max(seen, event.originator_version)
        return seen >= event.originator_version

    def feed_page(self, page: Page) -> None:
        """Feeds a page's positions, as :meth:`feed` would one by one. While events and links
        pair up and every check passes — the usual case — one tight loop does the work of
        both checks with one hash per event; from the first position that is anything else,
        the rest of the page goes through :meth:`feed`, so a problem is reported exactly as
        it would be there."""
        rows, links = page.rows, page.links
        report, watch, versions = self.report, self._watch, self._versions
        head, last = report.recomputed_head, report.last_event
        tree, tree_at = report.tree, report.tree_at
        done = 0
        if (self._stored_prev.sequence, self._stored_prev.hash) == (last, head):
            for row, link in zip(rows, links, strict=False):  # a shorter list: a surprise
                sequence, originator, version = row[0], row[1], row[2]
                if link.sequence != sequence or link.previous != last:
                    break
                digest, leaf_digest = link_and_leaf(head, row, last)
                if digest != link.hash or versions.get(originator, 0) >= version:
                    break
                versions[originator] = version
                tree.add(leaf_digest)
                if sequence in watch:
                    report.recomputed_at[sequence] = digest
                    tree_at[sequence] = (tree.size, tree.root())
                head, last = digest, sequence
                done += 1
        if done:
            report.recomputed_head, report.last_event, report.last = head, last, last
            report.events += done
            report.links += done
            self._stored_prev = links[done - 1]
        if done < len(rows) or done < len(links):
            for item in Page(rows[done:], links[done:]).items():
                self.feed(item)

    def _check_link(
        self, event: Stored, link: Link, out_of_order: bool, expected: bytes | None
    ) -> None:
        prev = self._stored_prev
        if link.previous > prev.sequence:
            self._problem(
                link.previous,
                "deleted",
                f"event {event.sequence} is chained to {link.previous}, which is missing",
            )
        elif link.previous < prev.sequence:
            self._problem(
                prev.sequence,
                "inserted",
                f"not in the chain: the next event, {event.sequence}, is chained to "
                f"{link.previous}",
            )
        elif (expected or link_hash(prev.hash, event, prev.sequence)) != link.hash:
            reason = "reordered" if out_of_order else "changed"
            self._problem(
                event.sequence,
                reason,
                "stored columns differ from what was chained (content changed or events "
                "swapped)"
                + ("; the aggregate's versions are out of order" if out_of_order else ""),
            )


def verify(
    items: Iterable[Item] | Paged,
    watch: Iterable[int] = (),
    start: tuple[int, bytes] | None = None,
) -> Report:
    """The report over ``items``; a source that reads in pages is verified a page at a time."""
    verifier = ChainVerifier(watch, start)
    if hasattr(items, "pages"):
        for page in items.pages():
            verifier.feed_page(page)
    else:
        for item in items:
            verifier.feed(item)
    return verifier.report
