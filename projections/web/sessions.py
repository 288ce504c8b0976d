"""Browser sessions and privacy-center links, kept in PostgreSQL.

Rules this module keeps:

* **The browser holds only a random id.** A session's cookie is ``secrets.token_urlsafe(32)``;
  the table holds its SHA-256, so a leaked table opens no session. A link's code likewise.
* **No personal data in clear.** A privacy-center session needs the subject's upstream
  reference (to record what the person does); it is wrapped by the KEK, bound to the
  session's digest, like a webhook secret. It never reaches a cookie, a URL or a log.
* **Sessions end.** A session is refused ``idle`` after its last request or at its absolute
  expiry, whichever comes first, and deleted on sign-out; expired rows are purged whenever a
  session begins. Every instance of ``ledger serve`` reads the same table.
* **A link is good once.** Exchanging a code deletes it in the same statement that reads it,
  so two browsers cannot both use it, and a code past its expiry opens nothing.
* **A session acts as an API key.** It records the key that signed in (console) or that
  created the link (privacy center); every request resolves that key again, so revoking the
  key ends its sessions within the key cache's lifetime.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ledger.keys import crypto

Kind = Literal["console", "privacy"]

_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.web_sessions (
    id_sha256 bytea PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('console', 'privacy')),
    tenant text NOT NULL,
    key_id text NOT NULL,
    csrf text NOT NULL,
    language text NOT NULL,
    wrapped_ref bytea,
    kek_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.web_links (
    code_sha256 bytea PRIMARY KEY,
    tenant text NOT NULL,
    key_id text NOT NULL,
    language text NOT NULL,
    wrapped_ref bytea NOT NULL,
    kek_id text NOT NULL,
    expires_at timestamptz NOT NULL
)
"""


def _sql(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema))


def create_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    with conn.transaction():
        conn.execute(_sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema))
        for statement in _DDL.split(";"):
            conn.execute(_sql(statement, schema))


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def _link_context(code_digest: bytes) -> bytes:
    return b"privacy-link:" + code_digest


def _session_context(session_digest: bytes) -> bytes:
    return b"web-session:" + session_digest


@dataclass(frozen=True)
class Session:
    """One signed-in browser: who it acts as, its CSRF token and language."""

    digest: bytes
    kind: Kind
    tenant: str
    key_id: str
    csrf: str
    language: str
    subject_ref: str | None
    expires_at: datetime


@dataclass(frozen=True)
class Link:
    code: str
    expires_at: datetime


class Sessions:
    """The two tables, through the API's async pool."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        kek: crypto.KeyEncryptionKey,
        *,
        idle: timedelta,
        lifetime: timedelta,
        link_ttl: timedelta,
    ) -> None:
        self._pool = pool
        self._kek = kek
        self.idle = idle
        self.lifetime = lifetime
        self.link_ttl = link_ttl
        self._q = {
            "purge": _sql(
                "DELETE FROM {schema}.web_sessions WHERE expires_at < now() "
                "OR last_seen < now() - %(idle)s::interval",
                schema,
            ),
            "purge_links": _sql("DELETE FROM {schema}.web_links WHERE expires_at < now()", schema),
            "begin": _sql(
                "INSERT INTO {schema}.web_sessions (id_sha256, kind, tenant, key_id, csrf, "
                "language, wrapped_ref, kek_id, expires_at) VALUES (%(id)s, %(kind)s, "
                "%(tenant)s, %(key_id)s, %(csrf)s, %(language)s, %(wrapped)s, %(kek_id)s, "
                "now() + %(lifetime)s::interval) RETURNING expires_at",
                schema,
            ),
            "touch": _sql(
                "UPDATE {schema}.web_sessions SET last_seen = now() WHERE id_sha256 = %(id)s "
                "AND kind = %(kind)s AND expires_at > now() "
                "AND last_seen > now() - %(idle)s::interval "
                "RETURNING tenant, key_id, csrf, language, wrapped_ref, kek_id, expires_at",
                schema,
            ),
            "end": _sql("DELETE FROM {schema}.web_sessions WHERE id_sha256 = %(id)s", schema),
            "end_key": _sql("DELETE FROM {schema}.web_sessions WHERE key_id = %(key_id)s", schema),
            "language": _sql(
                "UPDATE {schema}.web_sessions SET language = %(language)s WHERE id_sha256 = %(id)s",
                schema,
            ),
            "link": _sql(
                "INSERT INTO {schema}.web_links (code_sha256, tenant, key_id, language, "
                "wrapped_ref, kek_id, expires_at) VALUES (%(id)s, %(tenant)s, %(key_id)s, "
                "%(language)s, %(wrapped)s, %(kek_id)s, now() + %(ttl)s::interval) "
                "RETURNING expires_at",
                schema,
            ),
            "redeem": _sql(
                "DELETE FROM {schema}.web_links WHERE code_sha256 = %(id)s "
                "RETURNING tenant, key_id, language, wrapped_ref, kek_id, "
                "expires_at > now() AS fresh",
                schema,
            ),
        }

    async def _one(self, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self._pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(self._q[name], params)
            return await cur.fetchone() if cur.description else None

    async def begin(
        self,
        kind: Kind,
        tenant: str,
        key_id: str,
        language: str,
        subject_ref: str | None = None,
    ) -> tuple[str, Session]:
        """A new session: its cookie value (shown to the browser only) and its record."""
        await self._one("purge", {"idle": self.idle})
        token = secrets.token_urlsafe(32)
        id_digest = digest(token)
        wrapped = None
        if subject_ref is not None:
            wrapped = self._kek.wrap(subject_ref.encode(), _session_context(id_digest))
        csrf = secrets.token_urlsafe(32)
        row = await self._one(
            "begin",
            {
                "id": id_digest,
                "kind": kind,
                "tenant": tenant,
                "key_id": key_id,
                "csrf": csrf,
                "language": language,
                "wrapped": wrapped,
                "kek_id": self._kek.key_id if wrapped else None,
                "lifetime": self.lifetime,
            },
        )
        assert row is not None
        session = Session(
            id_digest, kind, tenant, key_id, csrf, language, subject_ref, row["expires_at"]
        )
        return token, session

    async def resume(self, kind: Kind, token: str | None) -> Session | None:
        """The live session behind a cookie value (its idle clock restarted), else None."""
        if not token or len(token) > 100:
            return None
        id_digest = digest(token)
        row = await self._one("touch", {"id": id_digest, "kind": kind, "idle": self.idle})
        if row is None:
            return None
        ref = None
        if row["wrapped_ref"] is not None:
            try:
                ref = self._kek.unwrap(
                    bytes(row["wrapped_ref"]), _session_context(id_digest), kek_id=row["kek_id"]
                ).decode()
            except crypto.CannotOpen:
                return None  # the KEK it was wrapped under is gone: the session cannot act
        return Session(
            id_digest,
            kind,
            row["tenant"],
            row["key_id"],
            row["csrf"],
            row["language"],
            ref,
            row["expires_at"],
        )

    async def end(self, session: Session) -> None:
        await self._one("end", {"id": session.digest})

    async def set_language(self, session: Session, language: str) -> None:
        await self._one("language", {"id": session.digest, "language": language})

    async def create_link(self, tenant: str, key_id: str, subject_ref: str, language: str) -> Link:
        await self._one("purge_links", {})
        code = secrets.token_urlsafe(32)
        id_digest = digest(code)
        wrapped = self._kek.wrap(subject_ref.encode(), _link_context(id_digest))
        row = await self._one(
            "link",
            {
                "id": id_digest,
                "tenant": tenant,
                "key_id": key_id,
                "language": language,
                "wrapped": wrapped,
                "kek_id": self._kek.key_id,
                "ttl": self.link_ttl,
            },
        )
        assert row is not None
        return Link(code, row["expires_at"])

    async def redeem(self, code: str) -> tuple[str, Session] | None:
        """A privacy-center session for a link's code, once; None if the code is unknown,
        used or expired."""
        if not code or len(code) > 100:
            return None
        id_digest = digest(code)
        row = await self._one("redeem", {"id": id_digest})
        if row is None or not row["fresh"]:
            return None
        try:
            ref = self._kek.unwrap(
                bytes(row["wrapped_ref"]), _link_context(id_digest), kek_id=row["kek_id"]
            ).decode()
        except crypto.CannotOpen:
            return None
        return await self.begin("privacy", row["tenant"], row["key_id"], row["language"], ref)
