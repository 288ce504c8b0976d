"""``ledger webhooks add|list|disable|remove`` against a real PostgreSQL."""

from __future__ import annotations

import base64

import psycopg
from click.testing import Result
from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load


def run(environ: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["webhooks", *args], env=environ)


def test_an_endpoint_is_registered_listed_disabled_and_removed(
    settings_environ: dict[str, str], settings: Settings
) -> None:
    ledger = open_ledger(settings)
    ledger.register_tenant("acme", "Acme")
    ledger.close()

    added = run(settings_environ, "add", "acme", "Mailer Inc.", "http://127.0.0.1:9/hook")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert "use https for production" in added.stderr.lower()

    listed = run(settings_environ, "list", "acme")
    assert listed.stdout.splitlines()[1].split("\t")[:4] == [
        "acme",
        "Mailer Inc.",
        "recipient",
        "yes",
    ]
    assert secret not in listed.output
    with psycopg.connect(settings.require_database()) as conn:
        (wrapped,) = conn.execute(
            f"SELECT wrapped_secret FROM {settings.database_schema}.webhook_endpoints"
        ).fetchone() or (b"",)
    assert base64.b64decode(secret[6:]) not in wrapped

    again = run(settings_environ, "add", "acme", "Mailer Inc.", "https://other.example/")
    assert again.exit_code == 2 and "already has an endpoint" in again.stderr
    assert run(settings_environ, "disable", "acme", "Mailer Inc.").exit_code == 0
    assert "\tno\t" in run(settings_environ, "list").stdout
    assert run(settings_environ, "remove", "acme", "Mailer Inc.").exit_code == 0
    assert run(settings_environ, "remove", "acme", "Mailer Inc.").exit_code == 1
    assert "no webhook endpoints" in run(settings_environ, "list").stderr


def test_bad_urls_and_unknown_tenants_are_refused_with_a_reason(
    settings_environ: dict[str, str],
) -> None:
    ledger = open_ledger(load(settings_environ))
    ledger.register_tenant("acme", "Acme")
    ledger.close()
    for url, reason in [
        ("ftp://files.example/hook", "https://"),
        ("https://user:pw@hooks.example/", "user name or password"),
    ]:
        refused = run(settings_environ, "add", "acme", "bank", url)
        assert refused.exit_code == 2 and reason in refused.stderr
    unknown = run(settings_environ, "add", "nobody", "bank", "https://hooks.example/")
    assert unknown.exit_code == 2 and "not registered" in unknown.stderr
    assert run(settings_environ, "attempts", "not-a-uuid").exit_code == 2
