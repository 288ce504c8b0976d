"""The purpose check's answers from memory, never older than the consent view.

Each API process keeps:

- per tenant, its purpose catalogue (purpose → required, legal basis, defining event, direct
  marketing, allowed under restriction);
- per (tenant, reference digest), the subject the reference names in the consent view with
  its consent rows, erasure request, restrictions and objections — or that the reference
  belonged to an erased subject, which is final (the ledger refuses every new event for such a
  reference).

**Never older than the view.** A check answers from a state at least as new as the view was
when the check arrived. Before answering from memory it waits for a *probe* that started
after it arrived: one statement, in one snapshot, that reads the consent view's position, the
identity of its tracking table, and which subjects and which tenants' catalogues changed
after the position memory holds (every row of the view carries the position of the batch
that last changed it, indexed). The probe drops what changed, then the check reads memory.
A check that arrives while probes run starts its own, up to :data:`PROBES_IN_FLIGHT` side by
side; beyond that, the checks that arrive share the next one to start. A probe costs a few
index lookups when nothing changed.

What memory does not hold (never asked, dropped, evicted) is read from the database together
with the view position it was read at, and kept only if that position is not behind the one
memory holds: a read that raced a probe answers its own check but is not kept. A check none
of whose references memory holds needs no probe: one read (the tenant's catalogue with it)
answers it, and that read started after the check arrived.

So nothing depends on ``NOTIFY``: a notification lost while a connection was down cannot
leave memory stale, because the probe reads the view's own tracking row. A rebuild swaps in
new tables: the probe sees a new tracking table and empties memory. A view that went back (a
database crash loses its last unflushed commits) empties it too. A new server starts empty.

**Bounded.** At most ``LEDGER_PURPOSE_CACHE_SUBJECTS`` references, the least recently
checked evicted first; an evicted reference is read from the database at its next check. A
reference the view does not know (yet) is not kept: each check of it reads the database.
``0`` turns memory off, and every check is one query (:meth:`Queries.purpose_checks`).

**Erasure takes effect at once.** Shredding moves a reference from ``subject_refs`` to
``erased_refs`` in the ledger's own transaction, before the view hears of it, and a check
after that transaction must refuse. So the probe also reads the ledger's ``KeysShredded``
events recorded after the ledger position memory holds (a range of the event table's
primary key: the events since the last probe) and drops their subjects; the database then
answers ``subject_erased``, which memory keeps for good. A read is kept only if neither its
view position nor its ledger position is behind memory's. (More than
:data:`MAX_LEDGER_SCAN` events since the last probe, and memory is emptied instead.)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import PoolTimeout

from ledger.application.service import EVENTS_TABLE, SHREDDED_TOPIC
from projections.api.decisions import decide
from projections.api.models import PurposeDecision
from projections.queries import Conn, Queries

Connect = Callable[[], AbstractAsyncContextManager[Conn]]

# More changed subjects than this in one probe and memory is emptied instead of picked over.
MAX_CHANGES: Final = 5000
# Probes one process runs side by side: a check arriving while they all run waits for the
# next to start (a probe that started before it arrived may predate a commit it must see).
PROBES_IN_FLIGHT: Final = 4
# More ledger events than this since the last probe and memory is emptied instead of scanned.
MAX_LEDGER_SCAN: Final = 50_000
_NOTHING_HELD: Final = 2**62  # "changed after" this finds nothing: memory holds nothing


class _Erased:
    """The reference belonged to a subject who has been erased."""

    def __repr__(self) -> str:
        return "ERASED"


ERASED: Final = _Erased()


@dataclass(slots=True)
class Known:
    """A subject as the consent view knows it: what the purpose check decides from."""

    subject_id: UUID
    erasure_requested_at: datetime | None
    erasure_event_id: str | None
    # purpose → (state, consent text version, event id, changed at)
    consents: dict[str, tuple[str, str, str, datetime]]
    # Restrictions in place, earliest first: (purposes, or () for all; event id; since).
    restrictions: tuple[tuple[tuple[str, ...], str, datetime], ...] = ()
    # purpose → (objection's event id, since, the grounds' event id or None)
    objections: dict[str, tuple[str, datetime, str | None]] | None = None

    def restriction(self, purpose: str) -> tuple[str, datetime] | None:
        for purposes, event_id, since in self.restrictions:
            if not purposes or purpose in purposes:
                return event_id, since
        return None


Entry = Known | _Erased | None  # None: no subject the view knows
# purpose → (required, legal basis, event id, direct marketing, allowed under restriction)
Catalogue = dict[str, tuple[bool, str, str, bool, bool]]


def decision(purpose: str, catalogue: Catalogue, entry: Entry) -> PurposeDecision:
    """The decision :func:`decide` gives for the row the database would return."""
    defined = catalogue.get(purpose)
    if defined is None:
        return decide(purpose, None)
    row: dict[str, Any] = {
        "required": defined[0],
        "legal_basis": defined[1],
        "purpose_event_id": defined[2],
        "direct_marketing": defined[3],
        "allowed_under_restriction": defined[4],
        "erased": entry is ERASED,
        "subject_id": None,
        "erasure_requested_at": None,
        "erasure_event_id": None,
        "state": None,
        "consent_text_version": None,
        "event_id": None,
        "changed_at": None,
        "restriction_event_id": None,
        "restricted_at": None,
        "objection_event_id": None,
        "objected_at": None,
        "grounds_event_id": None,
    }
    if isinstance(entry, Known):
        row["subject_id"] = entry.subject_id
        row["erasure_requested_at"] = entry.erasure_requested_at
        row["erasure_event_id"] = entry.erasure_event_id
        consent = entry.consents.get(purpose)
        if consent is not None:
            row["state"], row["consent_text_version"], row["event_id"], row["changed_at"] = consent
        restriction = entry.restriction(purpose)
        if restriction is not None:
            row["restriction_event_id"], row["restricted_at"] = restriction
        objection = entry.objections.get(purpose) if entry.objections else None
        if objection is not None:
            row["objection_event_id"], row["objected_at"], row["grounds_event_id"] = objection
    return decide(purpose, row)


@dataclass
class Probe:
    """What one probe read: the view's tracking table, its position, and what changed."""

    generation: int | None
    position: int  # the consent view's
    head: int  # the ledger's
    subjects: list[UUID]  # changed in the view, or shredded in the ledger
    tenants: list[str]
    since: int = 0  # the view position it read changes after
    head_since: int = 0  # the ledger position it read shreddings after


class PurposeCache:
    """Answers purpose checks from memory kept no older than the consent view (module doc)."""

    def __init__(
        self,
        queries: Queries,
        connect: Connect,
        *,
        capacity: int,
        recover: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.queries = queries
        self.connect = connect
        self.recover = recover
        self.capacity = capacity
        self.position = 0  # the consent view position memory is as new as
        self.head = 0  # the ledger position whose shreddings memory has dropped
        self.generation: int | None = None
        self.entries: OrderedDict[tuple[str, bytes], Entry] = OrderedDict()
        self.by_subject: dict[UUID, tuple[str, bytes]] = {}
        self.catalogues: dict[str, Catalogue] = {}
        self.stats = {"hits": 0, "misses": 0, "probes": 0, "emptied": 0}
        self.on_count: Callable[[str, int], None] | None = None  # metrics (``/metrics``)
        self.tracking = queries.tracking_table("consent")
        self._started = 0  # probes started (each one's ticket is its number)
        self._applied = 0  # the latest ticket applied
        self._in_flight = 0
        self._waiting: dict[int, asyncio.Future[None]] = {}  # by the ticket they wait for
        self._probes: set[asyncio.Task[None]] = set()

    # -- answers ------------------------------------------------------------------------

    async def check(self, tenant: str, pairs: Sequence[tuple[bytes, str]]) -> list[PurposeDecision]:
        """The decisions for (reference digest, purpose) pairs, in the order given."""
        catalogue: Catalogue | None = None
        if any((tenant, digest) in self.entries for digest, _ in pairs):
            await self.fresh()  # memory may answer: bring it up to the view first
            catalogue = self.catalogues.get(tenant)
        # else nothing is in memory to answer from: one read, the catalogue with it, answers
        # all of them, and needs no probe (it starts after the check arrived, too).
        entries: dict[bytes, Entry] = {}
        missing: list[bytes] = []
        for digest, _ in pairs:
            if digest in entries:
                continue
            key = (tenant, digest)
            found = self.entries.get(key)
            if found is None:
                missing.append(digest)
                entries[digest] = None
            else:
                self.entries.move_to_end(key)
                entries[digest] = found
        self._count("hits", len(entries) - len(missing))
        self._count("misses", len(missing))
        if missing or catalogue is None:
            loaded, catalogue = await self._load(tenant, missing, catalogue is None)
            entries.update(loaded)
        assert catalogue is not None
        return [decision(purpose, catalogue, entries[digest]) for digest, purpose in pairs]

    def _count(self, what: str, n: int) -> None:
        self.stats[what] += n
        if self.on_count is not None and n:
            self.on_count(what, n)

    # -- freshness ----------------------------------------------------------------------

    async def fresh(self) -> None:
        """Returns once a probe that started after this call has been applied."""
        ticket = self._started + 1  # the next probe to start
        waiter = self._waiting.get(ticket)
        if waiter is None:
            waiter = self._waiting[ticket] = asyncio.get_running_loop().create_future()
        self._start_probe()
        await asyncio.shield(waiter)

    def _start_probe(self) -> None:
        """Starts the next probe if a check waits for it and fewer than
        :data:`PROBES_IN_FLIGHT` run; otherwise the next to finish starts it."""
        if self._in_flight < PROBES_IN_FLIGHT and self._started + 1 in self._waiting:
            self._started += 1
            self._in_flight += 1
            task = asyncio.create_task(self._run_probe(self._started))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _run_probe(self, ticket: int) -> None:
        waiter = self._waiting.pop(ticket)
        try:
            found = await self._retrying(self._probe)
        except BaseException as exc:  # every check waiting for this probe hears why
            waiter.set_exception(_unavailable(exc))
            waiter.exception()  # retrieved: a check that gave up logs nothing
            if not isinstance(exc, Exception):
                raise
        else:
            # Probes run side by side may finish out of order: one that started before an
            # applied one only drops what it saw.
            self.apply(found, overtaken=ticket < self._applied)
            self._applied = max(self._applied, ticket)
            waiter.set_result(None)
        finally:
            self._in_flight -= 1
            self._start_probe()

    async def _probe(self, conn: Conn) -> Probe:
        holding = bool(self.entries or self.catalogues)
        since = self.position if holding else _NOTHING_HELD
        head_since = self.head if holding else _NOTHING_HELD
        cur = await conn.execute(
            self.queries.sql(_PROBE),
            {
                "tracking": self.tracking,
                "since": since,
                "until": _NOTHING_HELD + 1,
                "limit": MAX_CHANGES + 1,
                "head": head_since,
                "scan": MAX_LEDGER_SCAN,
                "shredded": SHREDDED_TOPIC,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        self._count("probes", 1)
        return Probe(
            row["generation"],
            row["position"],
            row["head"],
            row["subjects"] + row["shredded"],
            row["tenants"],
            since,
            head_since,
        )

    def apply(self, probe: Probe, *, overtaken: bool = False) -> None:
        """Drops what changed after the positions memory holds. Empties memory instead when
        the view's tables were swapped (a rebuild), the view went back, too much changed to
        pick over, or the probe's ranges do not reach back to memory's positions (it began
        while memory held nothing, and a read has filled it since). An ``overtaken`` probe (a
        later one was applied first) only drops."""
        if overtaken:
            self._drop(probe)
            return
        if (
            probe.generation != self.generation
            or probe.position < self.position
            or probe.since > self.position
            or probe.head_since > self.head
            or len(probe.subjects) > MAX_CHANGES
            or probe.head - probe.head_since > MAX_LEDGER_SCAN
        ):
            self.empty()
            self.generation = probe.generation
        else:
            self._drop(probe)
        self.position = probe.position
        self.head = max(self.head, probe.head)

    def _drop(self, probe: Probe) -> None:
        for subject_id in probe.subjects:
            key = self.by_subject.pop(subject_id, None)
            if key is not None:
                self.entries.pop(key, None)
        for tenant in probe.tenants:
            self.catalogues.pop(tenant, None)

    def empty(self) -> None:
        if self.entries or self.catalogues:
            self._count("emptied", 1)
        self.entries.clear()
        self.by_subject.clear()
        self.catalogues.clear()

    # -- reads of what memory lacks -----------------------------------------------------

    async def _load(
        self, tenant: str, digests: Sequence[bytes], with_catalogue: bool
    ) -> tuple[dict[bytes, Entry], Catalogue | None]:
        """Reads subjects (and the catalogue) memory lacks in one statement, so the rows are
        exactly as new as the view position they are kept under."""

        async def read(conn: Conn) -> list[DictRow]:
            params: dict[str, Any] = {
                "tracking": self.tracking,
                "tenant": tenant,
                "catalogue": with_catalogue,
            }
            if len(digests) > 1:
                params["digests"] = list(digests)
            else:  # at least one row: the head and the catalogue come on every row
                params["digest"] = digests[0] if digests else _NO_DIGEST
            text = _LOAD_MANY if len(digests) > 1 else _LOAD_ONE
            cur = await conn.execute(self.queries.sql(text), params)
            return await cur.fetchall()

        subject_rows = await self._retrying(read)
        head = subject_rows[0]
        if not self.entries and not self.catalogues:
            # Nothing held can be stale: memory starts from this read (at its positions, if
            # they are ahead; a probe that began before will then not vouch for it).
            self.generation = head["generation"]
            self.position = max(self.position, head["position"])
            self.head = max(self.head, head["head"])
        keep = (
            head["generation"] == self.generation
            and head["position"] >= self.position
            and head["head"] >= self.head
        )
        entries: dict[bytes, Entry] = {}
        for r in subject_rows:
            digest = bytes(r["digest"])
            if digest == _NO_DIGEST:
                continue
            entry = entries.get(digest)
            if r["erased"]:
                entries[digest] = ERASED
            elif r["subject_id"] is None:
                entries[digest] = None
            else:
                if not isinstance(entry, Known):
                    entry = entries[digest] = _known(r)
                if r["purpose"] is not None:  # the repeated words once in memory, not per row
                    entry.consents[sys.intern(r["purpose"])] = (
                        sys.intern(r["state"]),
                        sys.intern(r["consent_text_version"]),
                        r["event_id"],
                        r["changed_at"],
                    )
        catalogue = self.catalogues.get(tenant)
        if with_catalogue:
            catalogue = {
                purpose: (required, basis, event_id, marketing, restricted)
                for purpose, required, basis, event_id, marketing, restricted in head["catalogue"]
            }
        if keep:
            if catalogue is not None:
                self.catalogues[tenant] = catalogue
            for digest, entry in entries.items():
                if entry is not None:
                    self._keep(tenant, digest, entry)
        return entries, catalogue

    def _keep(self, tenant: str, digest: bytes, entry: Known | _Erased) -> None:
        key = (tenant, digest)
        self.entries[key] = entry
        self.entries.move_to_end(key)
        if isinstance(entry, Known):
            self.by_subject[entry.subject_id] = key
        while len(self.entries) > self.capacity:
            _, gone = self.entries.popitem(last=False)
            if isinstance(gone, Known):
                self.by_subject.pop(gone.subject_id, None)

    async def _retrying(self, read: Callable[[Conn], Any]) -> Any:
        """``read`` on a pooled connection; if that one had been cut (a database restart, an
        administrator's terminate), once more after ``recover`` (the pool drops every idle
        connection that was cut with it)."""
        for attempt in (1, 2):
            try:
                async with self.connect() as conn:
                    return await read(conn)
            except PoolTimeout:
                raise
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                if self.recover is not None:
                    await self.recover()
        raise AssertionError("unreachable")


def _known(row: DictRow) -> Known:
    """A subject's entry from its first row: the restrictions and objections (rare; JSON, or
    NULL when it has none) come on every row of the subject."""
    known = Known(row["subject_id"], row["erasure_requested_at"], row["erasure_event_id"], {})
    if row["restrictions"] is not None:
        known.restrictions = tuple(
            (tuple(purposes), event_id, datetime.fromisoformat(since))
            for purposes, event_id, since in json.loads(row["restrictions"])
        )
    if row["objections"] is not None:
        known.objections = {
            purpose: (event_id, datetime.fromisoformat(since), grounds)
            for purpose, event_id, since, grounds in json.loads(row["objections"])
        }
    return known


def _unavailable(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else RuntimeError("the probe was cancelled")


# The consent view's tracking table's identity (a rebuild swaps in another), its position,
# and the ledger's.
_HEAD = (
    "SELECT to_regclass(%(tracking)s)::oid AS generation, coalesce((SELECT notification_id "
    "FROM {consent}.tracking WHERE application_name = 'Ledger'), 0) AS position, "
    "coalesce((SELECT max(notification_id) FROM {ledger}." + EVENTS_TABLE + "), 0) AS head"
)
# The head, which subjects and catalogues changed in the view after its position, and which
# subjects the ledger shredded after its: one snapshot. Every range is bounded on both sides:
# a prepared statement's generic plan guesses a third of a table for ``position > $1`` (and
# scans it), but a two-sided range as a small slice (and reads the index).
_PROBE = (
    _HEAD + ", ARRAY(SELECT subject_id FROM {consent}.subjects "
    "WHERE position > %(since)s AND position <= %(until)s "
    "UNION SELECT subject_id FROM {consent}.consents "
    "WHERE position > %(since)s AND position <= %(until)s LIMIT %(limit)s) AS subjects, "
    "ARRAY(SELECT DISTINCT tenant FROM {consent}.purposes "
    "WHERE position > %(since)s AND position <= %(until)s) AS tenants, "
    "ARRAY(SELECT originator_id FROM {ledger}." + EVENTS_TABLE + " "
    "WHERE notification_id > %(head)s AND notification_id <= %(head)s + %(scan)s "
    "AND topic = %(shredded)s) AS shredded"
)
_NO_DIGEST: Final = b""  # no reference's: digests are 32 bytes
# Per reference: erased, or the subject the view knows with a row per consent it holds; on
# every row the head and, if asked for, the tenant's catalogue. One snapshot. The references'
# lookups are LATERAL with LIMIT 1 so that every plan, generic ones included, reads them by
# their primary key: joined plainly, a generic plan hashed the tenant's whole reference table.
_LOAD = (
    "SELECT h.generation, h.position, h.head, CASE WHEN %(catalogue)s THEN (SELECT "
    "coalesce(json_agg(json_build_array(p.purpose, p.required, p.legal_basis, p.event_id, "
    "p.direct_marketing, p.allowed_under_restriction)), '[]') FROM {consent}.purposes p "
    "WHERE p.tenant = %(tenant)s) END AS catalogue, "
    "q.digest, e.digest IS NOT NULL AS erased, "
    "s.subject_id, s.erasure_requested_at, s.erasure_event_id, x.restrictions, o.objections, "
    "c.purpose, c.state, c.consent_text_version, c.event_id, c.changed_at "
    "FROM (" + _HEAD + ") h CROSS JOIN {digests} "
    "LEFT JOIN LATERAL (SELECT e.digest FROM {ledger}.erased_refs e "
    "WHERE e.tenant = %(tenant)s AND e.digest = q.digest LIMIT 1) e ON true "
    "LEFT JOIN LATERAL (SELECT r.subject_id FROM {ledger}.subject_refs r "
    "WHERE r.tenant = %(tenant)s AND r.digest = q.digest LIMIT 1) r ON true "
    "LEFT JOIN {consent}.subjects s ON s.subject_id = r.subject_id "
    # Text, not json: the driver would parse it on every row of the subject.
    "LEFT JOIN LATERAL (SELECT json_agg(json_build_array(x.purposes, x.event_id, "
    "x.restricted_at) ORDER BY x.restricted_at, x.event_id)::text AS restrictions "
    "FROM {consent}.restrictions x WHERE x.subject_id = s.subject_id) x ON true "
    "LEFT JOIN LATERAL (SELECT json_agg(json_build_array(o.purpose, o.event_id, o.objected_at, "
    "o.grounds_event_id))::text AS objections "
    "FROM {consent}.objections o WHERE o.subject_id = s.subject_id) o ON true "
    "LEFT JOIN {consent}.consents c ON c.subject_id = s.subject_id"
)
# One reference as a one-row table, many as an array: PostgreSQL plans a statement over an
# array anew each time (its generic plan guesses ten elements and looks dearer), which cost a
# single check a tenth of a millisecond.
_ONE = "(SELECT %(digest)s::bytea AS digest) AS q"
_MANY = "unnest(%(digests)s::bytea[]) AS q(digest)"
_LOAD_ONE = _LOAD.replace("{digests}", _ONE)
_LOAD_MANY = _LOAD.replace("{digests}", _MANY)
