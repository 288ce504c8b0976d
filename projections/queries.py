"""Read queries over the views: plain SQL, one round trip each, always scoped to a tenant.

Every query takes the tenant of the caller's API key and filters by it, so no request can
reach another tenant's rows. Record queries also hide entries whose retention horizon has
passed but that the sweep has not deleted yet. Rows carry the subject's wrapped data key
(absent once shredded) so the caller can open personal columns without a second query.

The same queries answer over a replay (``projections.replay``): :meth:`Queries.over` points
them at the replay's schemas and makes ``as_of`` the query's "now". Keys, reference lookups
and erased references are always today's: a replay never reopens what has since been erased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Identifier

from ledger.process.settings import Settings
from projections.catalog import VIEWS, live_schema
from projections.register import DUE_SOON

Conn = AsyncConnection[DictRow]


# What the purpose check decides from (``projections.api.decisions``): the purpose, the
# subject, its consent row, the earliest restriction in place that covers the purpose, and the
# subject's objection to it. The batch and by-id checks select the same.
_DECISION = (
    "p.required, p.legal_basis, p.event_id AS purpose_event_id, p.direct_marketing, "
    "p.allowed_under_restriction, s.subject_id, s.erasure_requested_at, s.erasure_event_id, "
    "c.state, c.consent_text_version, c.event_id, c.changed_at, "
    "x.event_id AS restriction_event_id, x.restricted_at, "
    "o.event_id AS objection_event_id, o.objected_at, o.grounds_event_id"
)
_CONSENT_ROW = (
    "LEFT JOIN {consent}.consents c ON c.subject_id = s.subject_id AND c.purpose = p.purpose "
    "LEFT JOIN LATERAL (SELECT x.event_id, x.restricted_at FROM {consent}.restrictions x "
    "WHERE x.subject_id = s.subject_id AND (x.purposes = '{{}}' OR p.purpose = ANY(x.purposes)) "
    "ORDER BY x.restricted_at, x.event_id LIMIT 1) x ON true "
    "LEFT JOIN {consent}.objections o ON o.subject_id = s.subject_id AND o.purpose = p.purpose "
)


@dataclass(frozen=True)
class DisclosureFilter:
    since: datetime
    until: datetime
    recipient: str | None = None
    subject_id: UUID | None = None


class Queries:
    """Queries over the live views, or (:meth:`over`) over a replay's views as of an instant."""

    def __init__(
        self,
        settings: Settings,
        *,
        schemas: Mapping[str, str] | None = None,
        as_of: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.as_of = as_of
        views = schemas or {name: live_schema(settings, name) for name in VIEWS}
        self.names: dict[str, Composable] = {
            "ledger": Identifier(settings.database_schema),
            **{name: Identifier(views[name]) for name in VIEWS},
            "now": SQL("now()") if as_of is None else sql.Literal(as_of),
        }
        self._rendered: dict[str, bytes] = {}
        self._views = dict(views)

    def tracking_table(self, view: str) -> str:
        """The qualified name of a view's tracking table, as ``to_regclass`` reads it."""
        schema = self._views[view].replace('"', '""')
        return f'"{schema}".tracking'

    def over(self, schemas: Mapping[str, str], as_of: datetime) -> Queries:
        """The same queries over other view schemas (a replay), with ``as_of`` as now."""
        return Queries(self.settings, schemas=schemas, as_of=as_of)

    def now(self) -> datetime:
        """The instant the answers are as of: now, or a replay's ``as_of``."""
        return self.as_of or datetime.now(UTC)

    def sql(self, text: str) -> bytes:
        """The statement with the view schemas filled in, rendered once per text: composing
        and rendering it on every request was a tenth of the purpose check's time in the
        API process (profiled at 1,000 requests/s)."""
        found = self._rendered.get(text)
        if found is None:
            found = self._rendered[text] = SQL(text).format(**self.names).as_bytes(None)
        return found

    @property
    def horizons(self) -> dict[str, timedelta]:
        return {
            "disclosures": self.settings.retention_disclosures,
            "collections": self.settings.retention_collections,
        }

    async def subject_by_digest(
        self, conn: Conn, tenant: str, digest: bytes
    ) -> UUID | Literal["erased"] | None:
        """The subject of a reference; ``"erased"`` if it belonged to an erased subject."""
        cur = await conn.execute(
            self.sql(
                "SELECT subject_id FROM {ledger}.subject_refs WHERE tenant = %s AND digest = %s "
                "UNION ALL SELECT NULL FROM {ledger}.erased_refs WHERE tenant = %s AND digest = %s"
            ),
            [tenant, digest, tenant, digest],
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return "erased" if row["subject_id"] is None else row["subject_id"]

    async def subject(self, conn: Conn, tenant: str, subject_id: UUID) -> DictRow | None:
        """The subject as the consent view knows it, with its wrapped key (None if shredded)."""
        cur = await conn.execute(
            self.sql(
                "SELECT s.subject_id, s.subject_ref, s.registered_at, s.erasure_requested_at, "
                "k.wrapped, k.kek_id FROM {consent}.subjects s "
                "LEFT JOIN {ledger}.subject_keys k ON k.subject_id = s.subject_id "
                "WHERE s.subject_id = %s AND s.tenant = %s"
            ),
            [subject_id, tenant],
        )
        return await cur.fetchone()

    async def purposes(self, conn: Conn, tenant: str) -> list[DictRow]:
        cur = await conn.execute(
            self.sql(
                "SELECT purpose, required, legal_basis, description, current_version, texts, "
                "defined_at, event_id, direct_marketing, allowed_under_restriction "
                "FROM {consent}.purposes WHERE tenant = %s ORDER BY purpose"
            ),
            [tenant],
        )
        return await cur.fetchall()

    async def consents(self, conn: Conn, tenant: str, subject_id: UUID) -> list[DictRow]:
        cur = await conn.execute(
            self.sql(
                "SELECT purpose, state, consent_text_version, changed_at, recorded_at, source, "
                "event_id, first_granted_at, evidence, ip_address, user_agent "
                "FROM {consent}.consents WHERE subject_id = %s AND tenant = %s"
            ),
            [subject_id, tenant],
        )
        return await cur.fetchall()

    async def rights(
        self, conn: Conn, tenant: str, subject_id: UUID
    ) -> tuple[list[DictRow], list[DictRow]]:
        """The subject's restrictions in place (earliest first) and objections, by purpose, each
        with whether it still ``standing``."""
        cur = await conn.execute(
            self.sql(
                "SELECT restriction_reference, grounds, purposes, restricted_at, recorded_at, "
                "source, event_id, note FROM {consent}.restrictions "
                "WHERE subject_id = %s AND tenant = %s ORDER BY restricted_at, event_id"
            ),
            [subject_id, tenant],
        )
        restrictions = await cur.fetchall()
        cur = await conn.execute(
            self.sql(
                "SELECT o.purpose, o.objected_at, o.recorded_at, o.source, o.event_id, o.reason, "
                "o.grounds_event_id, o.grounds_reference, o.grounds_at, o.reasoning, "
                # standing: it refuses the purpose now (the rule of projections.api.decisions)
                "o.grounds_event_id IS NULL OR coalesce(p.direct_marketing, false) AS standing "
                "FROM {consent}.objections o LEFT JOIN {consent}.purposes p "
                "ON p.tenant = o.tenant AND p.purpose = o.purpose "
                "WHERE o.subject_id = %s AND o.tenant = %s ORDER BY o.purpose"
            ),
            [subject_id, tenant],
        )
        return restrictions, await cur.fetchall()

    async def rectifications(
        self, conn: Conn, tenant: str, subject_id: UUID
    ) -> dict[str, list[DictRow]]:
        """The corrections of the subject's personal fields, by the event they correct, oldest
        first."""
        cur = await conn.execute(
            self.sql(
                "SELECT corrects_event_id, field, event_id, rectified_at, recorded_at, producer, "
                "source FROM {consent}.rectifications WHERE subject_id = %s AND tenant = %s "
                "ORDER BY recorded_at, event_id"
            ),
            [subject_id, tenant],
        )
        found: dict[str, list[DictRow]] = {}
        for row in await cur.fetchall():
            found.setdefault(row["corrects_event_id"], []).append(row)
        return found

    async def requests(
        self,
        conn: Conn,
        tenant: str,
        *,
        state: str = "open",
        kind: str | None = None,
        subject_id: UUID | None = None,
        limit: int = 1000,
    ) -> list[DictRow]:
        """The register, by due date: ``state`` is ``open``, ``overdue`` (open past its due
        date), ``due_soon`` (open, due within the next ``due_soon`` interval), ``settled`` or
        ``all``; as of now, or a replay's instant."""
        filters = {
            "open": "status = 'open'",
            "overdue": "status = 'open' AND due_at < {now}",
            "due_soon": "status = 'open' AND due_at >= {now} AND due_at < {now} + %(soon)s",
            "settled": "status <> 'open'",
            "all": "true",
        }
        cur = await conn.execute(
            self.sql(
                "SELECT request_id, subject_id, kind, channel, identity_verified, received_at, "
                "recorded_at, extended_months, extensions, due_at, status, settled_at, "
                "resolution_event_id, refusal_code, details, reason, "
                "status = 'open' AND due_at < {now} AS overdue, "
                "status = 'open' AND due_at >= {now} AND due_at < {now} + %(soon)s AS due_soon "
                "FROM {erasure}.requests WHERE tenant = %(tenant)s AND "
                + filters[state]
                + " AND (%(kind)s::text IS NULL OR kind = %(kind)s) "
                "AND (%(subject)s::uuid IS NULL OR subject_id = %(subject)s) "
                "ORDER BY due_at, request_id LIMIT %(limit)s"
            ),
            {
                "tenant": tenant,
                "kind": kind,
                "subject": subject_id,
                "limit": limit,
                "soon": DUE_SOON,
            },
        )
        return await cur.fetchall()

    def purpose_check_sql(self) -> bytes:
        """One indexed lookup: the purpose, whether the reference belonged to an erased
        subject, the subject (if known) and its consent row.
        Parameters: the reference digest twice, the tenant, the purpose."""
        return self.sql(
            f"SELECT {_DECISION}, "
            "EXISTS (SELECT 1 FROM {ledger}.erased_refs e "
            "WHERE e.tenant = p.tenant AND e.digest = %s) AS erased "
            "FROM {consent}.purposes p "
            "LEFT JOIN {ledger}.subject_refs r ON r.tenant = p.tenant AND r.digest = %s "
            "LEFT JOIN {consent}.subjects s ON s.subject_id = r.subject_id "
            f"{_CONSENT_ROW}"
            "WHERE p.tenant = %s AND p.purpose = %s"
        )

    def purpose_checks_sql(self) -> bytes:
        """:meth:`purpose_check_sql` for many pairs in one statement: a row per pair, in the
        order given, ``known`` false where the tenant has no such purpose.
        Parameters: :meth:`purpose_checks_params`."""
        return self.sql(
            f"SELECT p.purpose IS NOT NULL AS known, {_DECISION}, "
            "e.digest IS NOT NULL AS erased "
            "FROM unnest(%(digests)s::bytea[], %(purposes)s::text[]) WITH ORDINALITY "
            "AS q(digest, purpose, n) "
            "LEFT JOIN {consent}.purposes p ON p.tenant = %(tenant)s AND p.purpose = q.purpose "
            # LATERAL with LIMIT 1: looked up by primary key in every plan (joined plainly, a
            # generic plan hashed the tenant's whole reference table).
            "LEFT JOIN LATERAL (SELECT e.digest FROM {ledger}.erased_refs e "
            "WHERE e.tenant = %(tenant)s AND e.digest = q.digest LIMIT 1) e ON true "
            "LEFT JOIN LATERAL (SELECT r.subject_id FROM {ledger}.subject_refs r "
            "WHERE r.tenant = %(tenant)s AND r.digest = q.digest LIMIT 1) r ON true "
            "LEFT JOIN {consent}.subjects s ON s.subject_id = r.subject_id "
            f"{_CONSENT_ROW}"
            "ORDER BY q.n"
        )

    @staticmethod
    def purpose_checks_params(tenant: str, pairs: Sequence[tuple[bytes, str]]) -> dict[str, object]:
        return {
            "tenant": tenant,
            "digests": [digest for digest, _ in pairs],
            "purposes": [purpose for _, purpose in pairs],
        }

    async def purpose_checks(
        self, conn: Conn, tenant: str, pairs: Sequence[tuple[bytes, str]]
    ) -> list[DictRow | None]:
        """:meth:`purpose_check` for many (reference digest, purpose) pairs, in one statement:
        a row per pair in the order given, None where the tenant has no such purpose."""
        cur = await conn.execute(
            self.purpose_checks_sql(), self.purpose_checks_params(tenant, pairs)
        )
        return self.known(await cur.fetchall())

    @staticmethod
    def known(rows: Sequence[DictRow]) -> list[DictRow | None]:
        """The batch's rows as :meth:`purpose_check` gives each: None for an unknown purpose."""
        return [row if row["known"] else None for row in rows]

    def purpose_check_by_id_sql(self) -> bytes:
        """The same answer for a subject named by id (replays ask this way: a later erasure
        took the reference lookup away). Parameters: the subject id, the tenant, the purpose."""
        return self.sql(
            f"SELECT {_DECISION}, false AS erased "
            "FROM {consent}.purposes p "
            "LEFT JOIN {consent}.subjects s ON s.subject_id = %s AND s.tenant = p.tenant "
            f"{_CONSENT_ROW}"
            "WHERE p.tenant = %s AND p.purpose = %s"
        )

    async def purpose_check_by_id(
        self, conn: Conn, tenant: str, subject_id: UUID, purpose: str
    ) -> DictRow | None:
        cur = await conn.execute(self.purpose_check_by_id_sql(), [subject_id, tenant, purpose])
        return await cur.fetchone()

    @staticmethod
    def purpose_check_params(tenant: str, digest: bytes, purpose: str) -> list[object]:
        return [digest, digest, tenant, purpose]

    async def purpose_check(
        self, conn: Conn, tenant: str, digest: bytes, purpose: str
    ) -> DictRow | None:
        params = self.purpose_check_params(tenant, digest, purpose)
        cur = await conn.execute(self.purpose_check_sql(), params)
        return await cur.fetchone()

    async def collections(self, conn: Conn, tenant: str, subject_id: UUID) -> list[DictRow]:
        cur = await conn.execute(
            self.sql(
                "SELECT event_id, purpose, categories, source, collected_at, recorded_at, "
                "last_used_at, description FROM {records}.collections "
                "WHERE subject_id = %s AND tenant = %s AND last_used_at >= {now} - %s "
                "ORDER BY collected_at, event_id"
            ),
            [subject_id, tenant, self.horizons["collections"]],
        )
        return await cur.fetchall()

    def disclosures_sql(
        self, tenant: str, f: DisclosureFilter, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[bytes, list[Any]]:
        """Disclosures in [since, until), oldest first, keyset-paginated after a cursor."""
        where = [
            "d.tenant = %s",
            "d.disclosed_at >= %s",
            "d.disclosed_at < %s",
            "d.last_used_at >= {now} - %s",
        ]
        params: list[Any] = [tenant, f.since, f.until, self.horizons["disclosures"]]
        if f.recipient is not None:
            where.append("d.recipient = %s")
            params.append(f.recipient)
        if f.subject_id is not None:
            where.append("d.subject_id = %s")
            params.append(f.subject_id)
        if after is not None:
            where.append("(d.disclosed_at, d.event_id) > (%s, %s)")
            params.extend(after)
        text = (
            "SELECT d.event_id, d.subject_id, d.recipient, d.purpose, d.categories, "
            "d.legal_basis, d.reference, d.disclosed_at, d.recorded_at, d.last_used_at, d.note, "
            "k.wrapped, k.kek_id FROM {records}.disclosures d "
            "LEFT JOIN {ledger}.subject_keys k ON k.subject_id = d.subject_id "
            "WHERE " + " AND ".join(where) + " ORDER BY d.disclosed_at, d.event_id"
        )
        if limit > 0:
            text += " LIMIT %s"
            params.append(limit)
        return self.sql(text), params

    async def disclosures(
        self,
        conn: Conn,
        tenant: str,
        f: DisclosureFilter,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 0,
    ) -> list[DictRow]:
        query, params = self.disclosures_sql(tenant, f, after, limit)
        cur = await conn.execute(query, params)
        return await cur.fetchall()

    async def erasure(
        self, conn: Conn, tenant: str, subject_id: UUID
    ) -> tuple[DictRow | None, list[DictRow], list[DictRow]]:
        """The key state, the erasure requests and the legal holds in place."""
        key = await self._of_subject(
            conn, "SELECT state, since, created_at FROM {erasure}.subject_keys", subject_id, tenant
        )
        requests = await self._of_subject(
            conn,
            "SELECT event_id, source, requested_at, recorded_at, due_by, status, status_at, "
            "refusal_reason, hold_references, deliveries FROM {erasure}.erasure_requests",
            subject_id,
            tenant,
            "ORDER BY requested_at",
        )
        holds = await self._of_subject(
            conn,
            "SELECT hold_reference, placed_at, event_id FROM {erasure}.legal_holds",
            subject_id,
            tenant,
            "ORDER BY placed_at",
        )
        return (key[0] if key else None), requests, holds

    async def _of_subject(
        self, conn: Conn, select: str, subject_id: UUID, tenant: str, order: str = ""
    ) -> list[DictRow]:
        """Rows of one subject, always filtered by the caller's tenant too."""
        query = f"{select} WHERE subject_id = %s AND tenant = %s {order}"
        cur = await conn.execute(self.sql(query), [subject_id, tenant])
        return await cur.fetchall()
