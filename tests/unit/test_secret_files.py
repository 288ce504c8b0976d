"""Secrets from mounted files: the database password and the lookup key."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from ledger.process.settings import ConfigError, load

PASSWORD = "p@ss:w/rd?#1"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    return {
        "LEDGER_DATABASE_URL": "postgresql://ledger@db.internal:5432/ledger?sslmode=require",
        "LEDGER_DATABASE_PASSWORD_FILE": str(tmp_path / "pw"),
        "LEDGER_DATA_DIR": str(tmp_path),
    }


def test_the_database_password_file_is_put_into_the_url(env: dict[str, str]) -> None:
    settings = load(env)
    params = conninfo_to_dict(settings.require_database())
    assert params["password"] == PASSWORD  # percent-encoded in the URL, decoded by libpq
    assert (params["user"], params["host"], params["dbname"]) == ("ledger", "db.internal", "ledger")
    assert params["sslmode"] == "require"
    assert settings.eventsourcing_env()["POSTGRES_PASSWORD"] == PASSWORD
    assert PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://ledger:other@db/ledger", "holds a password"),
        ("postgresql://db/ledger", "needs a user name"),
        ("", "LEDGER_DATABASE_URL is not"),
    ],
)
def test_a_password_file_with_an_unusable_url_is_refused(
    env: dict[str, str], url: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load({**env, "LEDGER_DATABASE_URL": url})
    assert PASSWORD not in str(raised.value)
    assert "other" not in str(raised.value)


def test_a_missing_password_file_is_named(env: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match=f"LEDGER_DATABASE_PASSWORD_FILE {missing} cannot be"):
        load({**env, "LEDGER_DATABASE_PASSWORD_FILE": missing})


def test_the_lookup_key_can_come_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    (tmp_path / "lookup").write_text(base64.b64encode(key).decode() + "\n")
    assert load({**env, "LEDGER_LOOKUP_KEY_FILE": str(tmp_path / "lookup")}).lookup_key == key
    (tmp_path / "lookup").write_text("not base64!\n")
    with pytest.raises(ConfigError, match="LEDGER_LOOKUP_KEY_FILE is not valid base64"):
        load({**env, "LEDGER_LOOKUP_KEY_FILE": str(tmp_path / "lookup")})
    with pytest.raises(ConfigError, match="either LEDGER_LOOKUP_KEY or LEDGER_LOOKUP_KEY_FILE"):
        load(
            {
                **env,
                "LEDGER_LOOKUP_KEY_FILE": str(tmp_path / "lookup"),
                "LEDGER_LOOKUP_KEY": base64.b64encode(key).decode(),
            }
        )
