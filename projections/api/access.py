"""API keys: which tenant a caller speaks for, and what it may ask.

A key belongs to exactly one tenant and carries one or more scopes:

* ``producer`` — upstream systems: purpose checks only ("may I use this subject's data for
  this purpose now?").
* ``reader`` — a subject's consent state, records and key state, without personal fields.
* ``auditor`` — everything a reader may, plus the tenant-wide disclosure log and export,
  with personal fields decrypted.
* ``admin`` — everything.

Rules this module keeps:

* A token is ``lk_<key_id>_<secret>``: ``key_id`` is 12 lower-case hex digits, the secret
  ``secrets.token_urlsafe(32)``. The token is shown once, at creation; the database holds
  only SHA-256 of the secret, compared in constant time.
* The token is never logged, stored or echoed in an error; only its key id is.
* A successful look-up is cached per key id for ``cache_ttl`` seconds, so the purpose-check
  path does not query the database per request. A revoked key therefore keeps working for
  at most ``cache_ttl`` seconds in each API process. Unknown key ids are not cached (their
  set is unbounded); each costs one primary-key look-up.
* Routes confine every query to ``Principal.tenant``; a key never reaches another tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import psycopg
import structlog
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from ledger.domain.values import TENANT_CODE
from ledger.plumbing.logs import get as get_logger
from projections.api.problems import Forbidden, Unauthorized, Unavailable

DEFAULT_CACHE_TTL = 5.0
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_TOKEN = re.compile(r"^lk_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})$")
_MAX_LABEL = 200


class Scope(StrEnum):
    """What a key may ask; see the module docstring. ``admin`` implies every scope and
    ``auditor`` implies ``reader``."""

    PRODUCER = "producer"
    READER = "reader"
    AUDITOR = "auditor"
    ADMIN = "admin"


PERSONAL_SCOPES = frozenset({Scope.AUDITOR, Scope.ADMIN})
"""Scopes that may see personal fields decrypted."""

_IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.PRODUCER: frozenset({Scope.PRODUCER}),
    Scope.READER: frozenset({Scope.READER}),
    Scope.AUDITOR: frozenset({Scope.AUDITOR, Scope.READER}),
    Scope.ADMIN: frozenset(Scope),
}


@dataclass(frozen=True)
class Principal:
    """The caller behind a verified API key."""

    key_id: str
    tenant: str
    scopes: frozenset[Scope]

    def has_any(self, *scopes: Scope) -> bool:
        return any(not _IMPLIED[held].isdisjoint(scopes) for held in self.scopes)

    @property
    def may_see_personal(self) -> bool:
        return not self.scopes.isdisjoint(PERSONAL_SCOPES)


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never its token or hash."""

    key_id: str
    tenant: str
    scopes: frozenset[Scope]
    label: str
    created_at: datetime
    revoked_at: datetime | None


class InvalidKeyRequest(ValueError):
    """A key cannot be created as asked; the message says why."""


def parse_scopes(names: Iterable[str | Scope]) -> frozenset[Scope]:
    """At least one scope, each one of ``Scope``'s values."""
    scopes: set[Scope] = set()
    for name in names:
        try:
            scopes.add(Scope(name))
        except ValueError:
            choices = ", ".join(s.value for s in Scope)
            raise InvalidKeyRequest(f"unknown scope {name!r}: use {choices}") from None
    if not scopes:
        raise InvalidKeyRequest("a key needs at least one scope")
    return frozenset(scopes)


def check_tenant(tenant: str) -> str:
    if not TENANT_CODE.match(tenant):
        raise InvalidKeyRequest(
            f"tenant code {tenant!r} is not valid: lower-case letters, digits, - and _"
        )
    return tenant


def _digest(secret: str) -> bytes:
    """SHA-256, unsalted and fast on purpose: the secret is 256 random bits, so guessing it
    is infeasible whatever the hash costs, and a slow password hash would only add latency
    to every request that is not cached."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def _scopes_from_db(values: Iterable[str]) -> frozenset[Scope]:
    """Names this version does not know (written by a newer one) grant nothing."""
    known = {s.value for s in Scope}
    return frozenset(Scope(v) for v in values if v in known)


# --- the table and the operator's functions (synchronous, used by the CLI) ------------------

_CREATE = """
CREATE TABLE IF NOT EXISTS {schema}.api_keys (
    key_id text PRIMARY KEY,
    tenant text NOT NULL,
    scopes text[] NOT NULL,
    secret_sha256 bytea NOT NULL,
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
)
"""
_COLUMNS = "key_id, tenant, scopes, label, created_at, revoked_at"


def _sql(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema))


def _info(row: tuple[Any, ...]) -> ApiKeyInfo:
    key_id, tenant, scopes, label, created_at, revoked_at = row
    return ApiKeyInfo(key_id, tenant, _scopes_from_db(scopes), label, created_at, revoked_at)


def create_table(conn: psycopg.Connection[Any], schema: str) -> None:
    with conn.transaction():
        conn.execute(_sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema))
        conn.execute(_sql(_CREATE, schema))


def create_key(
    conn: psycopg.Connection[Any],
    schema: str,
    tenant: str,
    scopes: Iterable[str | Scope],
    label: str = "",
) -> tuple[str, ApiKeyInfo]:
    """A new key: its token (shown to the operator once, never stored) and its record."""
    check_tenant(tenant)
    granted = parse_scopes(scopes)
    if len(label) > _MAX_LABEL:
        raise InvalidKeyRequest(f"a label has at most {_MAX_LABEL} characters")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    names = sorted(s.value for s in granted)
    query = (
        "INSERT INTO {schema}.api_keys (key_id, tenant, scopes, secret_sha256, label) "
        f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}"
    )
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_sql(query, schema), (key_id, tenant, names, _digest(secret), label))
        row = cur.fetchone()
    assert row is not None
    return f"lk_{key_id}_{secret}", _info(row)


def list_keys(
    conn: psycopg.Connection[Any], schema: str, tenant: str | None = None
) -> list[ApiKeyInfo]:
    query = (
        f"SELECT {_COLUMNS} FROM {{schema}}.api_keys "
        "WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s "
        "ORDER BY tenant, created_at, key_id"
    )
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_sql(query, schema), {"tenant": tenant})
        return [_info(row) for row in cur.fetchall()]


def revoke_key(conn: psycopg.Connection[Any], schema: str, key_id: str) -> bool:
    """True if the key was active and is now revoked; revocation cannot be undone."""
    query = (
        "UPDATE {schema}.api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL"
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_sql(query, schema), (key_id,))
        return cur.rowcount == 1


# --- verification (asynchronous, per request) -----------------------------------------------


@dataclass(frozen=True)
class _Stored:
    tenant: str
    scopes: frozenset[Scope]
    secret_sha256: bytes
    revoked: bool
    expires: float


def _parse(authorization_header: str | None) -> tuple[str, str]:
    """``(key_id, secret)`` from ``Bearer lk_<key_id>_<secret>``."""
    if not authorization_header:
        raise Unauthorized("an API key is needed: Authorization: Bearer lk_...")
    scheme, _, credentials = authorization_header.partition(" ")
    match = _TOKEN.match(credentials.strip())
    if scheme.lower() != "bearer" or match is None:
        raise Unauthorized("the Authorization header must be 'Bearer lk_<key id>_<secret>'")
    return match[1], match[2]


def _rejected(key_id: str, reason: str, detail: str) -> NoReturn:
    """The client learns only ``detail``: an unknown key and a wrong secret look alike."""
    get_logger("api").info("api_key_rejected", key_id=key_id, reason=reason)
    raise Unauthorized(detail)


class ApiKeys:
    """Verifies tokens against ``{schema}.api_keys`` through an async connection pool."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        *,
        pool_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        self._pool_timeout = pool_timeout
        self._select = _sql(
            "SELECT tenant, scopes, secret_sha256, revoked_at IS NOT NULL "
            "FROM {schema}.api_keys WHERE key_id = %s",
            schema,
        )
        self._create_schema = _sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema)
        self._create_table = _sql(_CREATE, schema)
        self._cache_ttl = cache_ttl
        self._cache: dict[str, _Stored] = {}

    async def create_table(self) -> None:
        """``create_table`` through the pool, for an app's startup."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(self._create_schema)
            await conn.execute(self._create_table)

    async def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal behind a valid, unrevoked token; else ``Unauthorized``."""
        key_id, secret = _parse(authorization_header)
        stored = await self._lookup(key_id)
        if stored is None:
            _rejected(key_id, "unknown_key", "invalid API key")
        if not hmac.compare_digest(_digest(secret), stored.secret_sha256):
            _rejected(key_id, "wrong_secret", "invalid API key")
        if stored.revoked:
            _rejected(key_id, "revoked", "this API key has been revoked")
        return Principal(key_id, stored.tenant, stored.scopes)

    async def principal(self, key_id: str) -> Principal | None:
        """The principal of an active key found by its id alone, for a browser session that
        proved the secret when it began; None once the key is revoked or gone."""
        stored = await self._lookup(key_id)
        if stored is None or stored.revoked:
            return None
        return Principal(key_id, stored.tenant, stored.scopes)

    async def _lookup(self, key_id: str) -> _Stored | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached.expires > now:
            return cached
        try:
            row = await self._fetch(key_id)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            get_logger("api").warning("api_key_lookup_failed", error=type(exc).__name__)
            raise Unavailable("cannot verify the API key: the database is unavailable") from None
        if row is None:
            self._cache.pop(key_id, None)
            return None
        tenant, scopes, digest, revoked = row
        expires = now + self._cache_ttl
        stored = _Stored(tenant, _scopes_from_db(scopes), bytes(digest), revoked, expires)
        self._cache[key_id] = stored
        return stored

    async def _fetch(self, key_id: str) -> tuple[Any, ...] | None:
        async with (
            self._pool.connection(timeout=self._pool_timeout) as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            await cur.execute(self._select, (key_id,))
            return await cur.fetchone()


# --- the FastAPI dependency -----------------------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `ledger apikeys create`: `Authorization: Bearer lk_...`.",
)


def require(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting keys with any of ``scopes``; it returns the caller's
    ``Principal`` and binds ``key_id`` and ``tenant`` into the request's log context."""
    if not scopes:
        raise ValueError("require() needs at least one scope")
    needed = ", ".join(s.value for s in scopes)

    async def dependency(
        request: Request,
        declared: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        # ``declared`` only puts bearer auth in the OpenAPI document; the header is parsed
        # by ``authenticate``, which gives the precise 401s.
        keys: ApiKeys = request.app.state.api_keys
        principal = await keys.authenticate(request.headers.get("authorization"))
        structlog.contextvars.bind_contextvars(key_id=principal.key_id, tenant=principal.tenant)
        if not principal.has_any(*scopes):
            raise Forbidden(f"this API key lacks the scope needed here (one of: {needed})")
        return principal

    dependency.scopes = scopes  # type: ignore[attr-defined]  # read by projections.web.calls
    return dependency
