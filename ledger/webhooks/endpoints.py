"""The endpoint registry: where each tenant's recipients and processors take erasure notices.

Rules:

- One endpoint per (tenant, name). ``name`` is a recipient exactly as disclosures name it, or
  a processor's name; ``kind`` says which. Processors are told of every erasure of the tenant,
  recipients only of subjects whose data they received.
- The URL is http or https, with a host, without user info (credentials would sit in clear in
  the database and in listings: authentication is the signature) and without a fragment.
  Plain http is accepted for development and tests; production endpoints should be https.
- The signing secret is generated here, returned once, and stored only wrapped by the
  key-encryption key, bound to the tenant and name (``secret_context``), with the KEK's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg

from ledger.domain.values import TENANT_CODE
from ledger.keys.crypto import KeyEncryptionKey
from ledger.keys.crypto import webhook_secret_context as secret_context
from ledger.webhooks import signing
from ledger.webhooks.notice import KINDS
from ledger.webhooks.tables import q

MAX_URL = 2048
MAX_NAME = 200


class InvalidEndpoint(ValueError):
    """The endpoint cannot be registered; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    tenant: str
    name: str
    kind: str
    url: str
    enabled: bool
    created_at: datetime


def check_url(url: str) -> str:
    url = url.strip()
    if len(url) > MAX_URL:
        raise InvalidEndpoint(f"the URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when not a number in range
    except ValueError:
        raise InvalidEndpoint("that is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidEndpoint("the URL must start with https:// (or http:// for development)")
    if not parts.hostname or port == 0:
        raise InvalidEndpoint("the URL has no host (or port 0)")
    if parts.username is not None or parts.password is not None:
        raise InvalidEndpoint(
            "the URL must not carry a user name or password: receivers authenticate the "
            "sender by the webhook signature"
        )
    if parts.fragment or url.endswith("#"):
        raise InvalidEndpoint("the URL must not have a #fragment")
    if any(c.isspace() for c in url):
        raise InvalidEndpoint("the URL must not contain spaces")
    return url


def is_plain_http(url: str) -> bool:
    return urlsplit(url).scheme == "http"


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidEndpoint(
            f"the name must be 1 to {MAX_NAME} printable characters: the recipient as "
            "disclosures name it, or the processor's name"
        )
    return name


def check_tenant(tenant: str) -> str:
    if not TENANT_CODE.match(tenant):
        raise InvalidEndpoint(
            "the tenant must be a tenant code (lower-case letters, digits, '-' and '_')"
        )
    return tenant


def add(
    conn: psycopg.Connection[Any],
    schema: str,
    kek: KeyEncryptionKey,
    *,
    tenant: str,
    name: str,
    url: str,
    kind: str,
) -> bytes:
    """Registers an endpoint and returns its new signing secret (the only time it is seen)."""
    tenant, name, url = check_tenant(tenant), check_name(name), check_url(url)
    if kind not in KINDS:
        raise InvalidEndpoint(f"kind must be one of {', '.join(KINDS)}")
    secret = signing.new_secret()
    wrapped = kek.wrap(secret, secret_context(tenant, name))
    inserted = conn.execute(
        q(
            "INSERT INTO {s}.webhook_endpoints (tenant, name, kind, url, kek_id, wrapped_secret)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            schema,
        ),
        [tenant, name, kind, url, kek.key_id, wrapped],
    ).rowcount
    if not inserted:
        raise InvalidEndpoint(
            f"tenant {tenant} already has an endpoint named {name!r}; remove it first "
            "(a new one gets a new secret)"
        )
    return secret


def list_endpoints(
    conn: psycopg.Connection[Any], schema: str, tenant: str | None = None
) -> list[Endpoint]:
    rows = conn.execute(
        q(
            "SELECT tenant, name, kind, url, enabled, created_at FROM {s}.webhook_endpoints"
            " WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s ORDER BY tenant, name",
            schema,
        ),
        {"tenant": tenant},
    ).fetchall()
    return [Endpoint(*row) for row in rows]


def remove(conn: psycopg.Connection[Any], schema: str, tenant: str, name: str) -> bool:
    deleted = conn.execute(
        q("DELETE FROM {s}.webhook_endpoints WHERE tenant = %s AND name = %s", schema),
        [tenant, name],
    ).rowcount
    return bool(deleted)


def set_enabled(
    conn: psycopg.Connection[Any], schema: str, tenant: str, name: str, enabled: bool
) -> bool:
    changed = conn.execute(
        q(
            "UPDATE {s}.webhook_endpoints SET enabled = %s WHERE tenant = %s AND name = %s",
            schema,
        ),
        [enabled, tenant, name],
    ).rowcount
    return bool(changed)


def enabled_kinds(conn: psycopg.Connection[Any], schema: str, tenant: str) -> dict[str, str]:
    """The tenant's enabled endpoints: name → kind."""
    rows = conn.execute(
        q(
            "SELECT name, kind FROM {s}.webhook_endpoints WHERE tenant = %s AND enabled",
            schema,
        ),
        [tenant],
    ).fetchall()
    return {name: kind for name, kind in rows}


def open_secret(
    kek: KeyEncryptionKey, tenant: str, name: str, wrapped: bytes, kek_id: str
) -> bytes:
    """The endpoint's signing secret; raises ``crypto.CannotOpen`` when the KEK it was
    wrapped by is not configured (or the row was tampered with)."""
    return kek.unwrap(wrapped, secret_context(tenant, name), kek_id=kek_id)


def rewrap(conn: psycopg.Connection[Any], schema: str, kek: KeyEncryptionKey) -> int:
    """Re-wraps every secret not wrapped by the current KEK (for KEK rotation); returns how
    many. The secrets themselves, and so the receivers' configuration, do not change."""
    rows = conn.execute(
        q(
            "SELECT tenant, name, kek_id, wrapped_secret FROM {s}.webhook_endpoints"
            " WHERE kek_id <> %s FOR UPDATE",
            schema,
        ),
        [kek.key_id],
    ).fetchall()
    for tenant, name, kek_id, wrapped in rows:
        secret = open_secret(kek, tenant, name, wrapped, kek_id)
        conn.execute(
            q(
                "UPDATE {s}.webhook_endpoints SET kek_id = %s, wrapped_secret = %s"
                " WHERE tenant = %s AND name = %s",
                schema,
            ),
            [kek.key_id, kek.wrap(secret, secret_context(tenant, name)), tenant, name],
        )
    return len(rows)
