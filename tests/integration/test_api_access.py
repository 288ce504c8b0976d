"""API keys against PostgreSQL: creation, verification, revocation, scopes, and the CLI."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import pytest
import typer
from fastapi import Depends, FastAPI
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from ledger.cli import apikeys
from projections.api import access, problems
from projections.api.access import ApiKeys, Principal, Scope, require
from projections.api.problems import Unauthorized

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 under its test client; httpx (our dev dependency) works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

T = TypeVar("T")


@pytest.fixture
def conn(database_url: str, pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        access.create_table(connection, pg_schema)
        yield connection


@pytest.fixture
def tokens(conn: psycopg.Connection[Any], pg_schema: str) -> dict[str, str]:
    """A token per role, for tenants ``acme`` and ``globex``."""
    made = {
        "producer": access.create_key(conn, pg_schema, "acme", ["producer"], "crm"),
        "reader": access.create_key(conn, pg_schema, "acme", [Scope.READER]),
        "auditor": access.create_key(conn, pg_schema, "acme", ["auditor"]),
        "admin": access.create_key(conn, pg_schema, "globex", ["admin"]),
    }
    return {role: token for role, (token, _) in made.items()}


def key_id(token: str) -> str:
    return token.split("_")[1]


def with_keys(
    database_url: str,
    schema: str,
    scenario: Callable[[ApiKeys], Awaitable[T]],
    cache_ttl: float = 5.0,
) -> T:
    async def run() -> T:
        async with AsyncConnectionPool(database_url, min_size=1, open=False) as pool:
            return await scenario(ApiKeys(pool, schema, cache_ttl=cache_ttl))

    return asyncio.run(run())


async def rejection(keys: ApiKeys, header: str | None) -> str:
    with pytest.raises(Unauthorized) as caught:
        await keys.authenticate(header)
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    return str(caught.value.detail)


# --- keys and tokens ---------------------------------------------------------------------


def test_a_token_is_shown_once_and_only_its_hash_is_stored(
    conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    token, info = access.create_key(conn, pg_schema, "acme", ["reader", "producer"], "crm sync")

    prefix, kid, secret = token[:3], token[3:15], token[16:]
    assert (prefix, kid, token[15]) == ("lk_", info.key_id, "_")
    assert access.KEY_ID.match(kid) and len(secret) == 43
    assert info.scopes == {Scope.READER, Scope.PRODUCER}
    assert (info.tenant, info.label, info.revoked_at) == ("acme", "crm sync", None)
    rows = conn.execute(f'SELECT * FROM "{pg_schema}".api_keys').fetchall()
    assert len(rows) == 1
    assert secret.encode() not in b"".join(str(v).encode() for v in rows[0])


@pytest.mark.parametrize(
    ("tenant", "scopes", "complaint"),
    [
        ("Acme Corp", ["reader"], "tenant code"),
        ("acme", [], "at least one scope"),
        ("acme", ["reader", "superuser"], "unknown scope 'superuser'"),
    ],
)
def test_a_key_needs_a_valid_tenant_and_scopes(
    conn: psycopg.Connection[Any], pg_schema: str, tenant: str, scopes: list[str], complaint: str
) -> None:
    with pytest.raises(access.InvalidKeyRequest, match=complaint):
        access.create_key(conn, pg_schema, tenant, scopes)
    assert access.list_keys(conn, pg_schema) == []


def test_keys_are_listed_per_tenant_and_revoked_once(
    conn: psycopg.Connection[Any], pg_schema: str, tokens: dict[str, str]
) -> None:
    acme = access.list_keys(conn, pg_schema, tenant="acme")

    assert {k.key_id for k in acme} == {
        key_id(tokens[r]) for r in ("producer", "reader", "auditor")
    }
    assert len(access.list_keys(conn, pg_schema)) == 4
    assert access.revoke_key(conn, pg_schema, key_id(tokens["reader"])) is True
    assert access.revoke_key(conn, pg_schema, key_id(tokens["reader"])) is False
    assert access.revoke_key(conn, pg_schema, "0" * 12) is False
    revoked = {k.key_id: k.revoked_at for k in access.list_keys(conn, pg_schema, "acme")}
    assert revoked[key_id(tokens["reader"])] is not None


# --- verification --------------------------------------------------------------------------


def test_a_good_token_authenticates_as_its_tenant_and_scopes(
    database_url: str, pg_schema: str, tokens: dict[str, str]
) -> None:
    async def scenario(keys: ApiKeys) -> list[Principal]:
        return [
            await keys.authenticate(f"Bearer {tokens['auditor']}"),
            await keys.authenticate(f"bearer {tokens['admin']}"),
        ]

    auditor, admin = with_keys(database_url, pg_schema, scenario)

    assert auditor == Principal(key_id(tokens["auditor"]), "acme", frozenset({Scope.AUDITOR}))
    assert auditor.may_see_personal and auditor.has_any(Scope.READER)
    assert not auditor.has_any(Scope.PRODUCER, Scope.ADMIN)
    assert (admin.tenant, admin.has_any(Scope.PRODUCER), admin.may_see_personal) == (
        "globex",
        True,
        True,
    )


def test_bad_headers_and_tokens_are_unauthorized(
    database_url: str, pg_schema: str, tokens: dict[str, str]
) -> None:
    good = tokens["reader"]
    wrong_secret = good[:16] + ("A" if good[16] != "A" else "B") + good[17:]
    unknown_key = "lk_" + "0" * 12 + good[15:]

    async def scenario(keys: ApiKeys) -> list[str]:
        headers = [None, "", good, f"Basic {good}", "Bearer", "Bearer lk_nothex_secret"]
        malformed = [await rejection(keys, h) for h in headers]
        return [
            *malformed,
            await rejection(keys, f"Bearer {wrong_secret}"),
            await rejection(keys, f"Bearer {unknown_key}"),
        ]

    details = with_keys(database_url, pg_schema, scenario)

    assert details[-2:] == ["invalid API key", "invalid API key"]
    assert all("Bearer lk_" in d for d in details[:-2])
    assert not any(good[16:] in d for d in details)


def test_a_revoked_key_is_refused_once_the_cache_expires(
    database_url: str, pg_schema: str, conn: psycopg.Connection[Any], tokens: dict[str, str]
) -> None:
    header = f"Bearer {tokens['producer']}"

    async def cached(keys: ApiKeys) -> Principal:
        await keys.authenticate(header)
        access.revoke_key(conn, pg_schema, key_id(tokens["producer"]))
        return await keys.authenticate(header)  # within cache_ttl: still admitted

    async def uncached(keys: ApiKeys) -> str:
        return await rejection(keys, header)

    assert with_keys(database_url, pg_schema, cached, cache_ttl=60).tenant == "acme"
    assert (
        with_keys(database_url, pg_schema, uncached, cache_ttl=0) == "this API key has been revoked"
    )


def test_an_unreachable_database_is_unavailable_not_unauthorized(
    pg_schema: str, tokens: dict[str, str]
) -> None:
    async def scenario() -> int:
        url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
        async with AsyncConnectionPool(url, min_size=1, timeout=1, open=False) as pool:
            keys = ApiKeys(pool, pg_schema)
            with pytest.raises(problems.Unavailable) as caught:
                await keys.authenticate(f"Bearer {tokens['reader']}")
            return caught.value.status

    assert asyncio.run(scenario()) == 503


# --- scopes through the dependency ---------------------------------------------------------


def build_app(database_url: str, schema: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncConnectionPool(database_url, min_size=1, open=False) as pool:
            app.state.api_keys = ApiKeys(pool, schema, cache_ttl=0)
            await app.state.api_keys.create_table()
            yield

    app = FastAPI(lifespan=lifespan)
    problems.install(app)

    @app.get("/purpose-check")
    async def purpose_check(
        who: Annotated[Principal, Depends(require(Scope.PRODUCER))],
    ) -> dict[str, str]:
        return {"tenant": who.tenant}

    @app.get("/disclosures")
    async def disclosures(
        who: Annotated[Principal, Depends(require(Scope.AUDITOR))],
    ) -> dict[str, bool]:
        return {"personal": who.may_see_personal}

    @app.get("/consents")
    async def consents(
        who: Annotated[Principal, Depends(require(Scope.READER))],
    ) -> dict[str, bool]:
        return {"personal": who.may_see_personal}

    return app


@pytest.fixture
def client(database_url: str, pg_schema: str, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(build_app(database_url, pg_schema)) as test_client:
        yield test_client


def status_of(client: TestClient, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers).status_code


@pytest.mark.parametrize(
    ("role", "purpose_check", "consents", "disclosures"),
    [
        ("producer", 200, 403, 403),
        ("reader", 403, 200, 403),
        ("auditor", 403, 200, 200),
        ("admin", 200, 200, 200),
        (None, 401, 401, 401),
    ],
)
def test_each_scope_reaches_what_it_should(
    client: TestClient,
    tokens: dict[str, str],
    role: str | None,
    purpose_check: int,
    consents: int,
    disclosures: int,
) -> None:
    token = tokens[role] if role else None
    assert status_of(client, "/purpose-check", token) == purpose_check
    assert status_of(client, "/consents", token) == consents
    assert status_of(client, "/disclosures", token) == disclosures


def test_a_refusal_is_a_problem_naming_the_needed_scope(
    client: TestClient, tokens: dict[str, str]
) -> None:
    forbidden = client.get("/disclosures", headers={"Authorization": f"Bearer {tokens['reader']}"})
    unauthorized = client.get("/disclosures", headers={"Authorization": "Bearer nonsense"})

    assert forbidden.headers["content-type"] == "application/problem+json"
    assert "auditor" in forbidden.json()["detail"]
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert client.get(
        "/consents", headers={"Authorization": f"Bearer {tokens['reader']}"}
    ).json() == {"personal": False}


def test_the_openapi_document_declares_bearer_auth(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert document["paths"]["/consents"]["get"]["security"] == [{"ApiKey": []}]


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, database_url: str, pg_schema: str, tmp_path: Path
) -> Callable[..., Any]:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    monkeypatch.setenv("LEDGER_DATABASE_SCHEMA", pg_schema)
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path))
    app = typer.Typer()
    apikeys.register(app)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["apikeys", *args])

    return invoke


def test_cli_creates_lists_and_revokes_a_key(cli: Callable[..., Any]) -> None:
    created = cli("create", "acme", "--scope", "producer", "--scope", "reader", "--label", "crm")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("lk_")
    assert "cannot be shown again" in created.stderr

    listed = cli("list", "--tenant", "acme")
    assert listed.exit_code == 0
    assert key_id(token) in listed.stdout
    assert "producer,reader\tcrm" in listed.stdout
    assert token not in listed.output and token[16:] not in listed.output

    revoked = cli("revoke", key_id(token))
    assert revoked.exit_code == 0, revoked.output
    again = cli("revoke", key_id(token))
    assert again.exit_code == 1
    assert "already revoked" in again.stderr
    [row] = [line for line in cli("list").stdout.splitlines() if key_id(token) in line]
    assert row.split("\t")[-1] != "-"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["create", "acme", "--scope", "superuser"], "unknown scope 'superuser'"),
        (["create", "acme"], "at least one scope"),
        (["create", "Not A Tenant", "--scope", "reader"], "tenant code"),
        (["revoke", "lk_0123456789ab_whole-token-pasted"], "not a key id"),
    ],
)
def test_cli_reports_bad_input_in_one_line(
    cli: Callable[..., Any], args: list[str], complaint: str
) -> None:
    result = cli(*args)

    assert result.exit_code == 2
    assert complaint in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "whole-token-pasted" not in result.output


def test_cli_reports_an_unreachable_database_in_one_line(
    cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")

    result = cli("list")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot use the database:")
    assert len(result.stderr.strip().splitlines()) == 1
