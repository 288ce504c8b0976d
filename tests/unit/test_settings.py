"""Reading settings: one clear error per bad value, and the dev state file as a fallback."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from ledger.kafka.topics import Topics
from ledger.process.settings import ConfigError, Settings, load


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


KEK = secrets.token_bytes(32)
LOOKUP = secrets.token_bytes(32)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A complete, valid environment whose data dir holds no dev state file."""
    return {
        "LEDGER_DATABASE_URL": "postgresql://ledger@db.internal:5432/ledger",
        "LEDGER_DATABASE_SCHEMA": "ledger",
        "LEDGER_KAFKA_BOOTSTRAP": "kafka1:9092,kafka2:9092",
        "LEDGER_KEK": b64(KEK),
        "LEDGER_LOOKUP_KEY": b64(LOOKUP),
        "LEDGER_DATA_DIR": str(tmp_path),
    }


def test_a_complete_environment_loads(env: dict[str, str], tmp_path: Path) -> None:
    settings = load(env)
    assert settings.require_database() == env["LEDGER_DATABASE_URL"]
    assert settings.require_kafka() == "kafka1:9092,kafka2:9092"
    assert settings.require_keys() == (KEK, LOOKUP)
    assert settings.data_dir == tmp_path
    assert settings.topics == Topics()
    assert (settings.ingest_batch_size, settings.relay_batch_size) == (500, 500)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://ledger:hunter2@db/ledger",
        "db.internal:5432",
        "ledger",
        "postgresql://ledger:hunter2@db/ledger?nosuchoption=1",
        "postgresql://ledger:hunter2@[::1/ledger",
        "postgresql://ledger:hunter2%zz@db/ledger",
    ],
)
def test_a_bad_database_url_is_refused_without_echoing_it(env: dict[str, str], url: str) -> None:
    with pytest.raises(ConfigError, match="LEDGER_DATABASE_URL") as raised:
        load({**env, "LEDGER_DATABASE_URL": url})
    assert "hunter2" not in str(raised.value)


def test_a_database_url_with_a_non_numeric_port_is_refused(env: dict[str, str]) -> None:
    # libpq parses such a URL without complaint; connecting fails much later.
    with pytest.raises(ConfigError, match="LEDGER_DATABASE_URL"):
        load({**env, "LEDGER_DATABASE_URL": "postgresql://ledger@db.internal:5432x/ledger"})


@pytest.mark.parametrize("name", ["LEDGER_KEK", "LEDGER_LOOKUP_KEY"])
def test_a_key_that_is_not_base64_is_refused_without_echoing_it(
    env: dict[str, str], name: str
) -> None:
    secret = "not*base64!" + "s3cr3t" * 5
    with pytest.raises(ConfigError, match=f"{name} is not valid base64") as raised:
        load({**env, name: secret})
    assert secret not in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("name", ["LEDGER_KEK", "LEDGER_LOOKUP_KEY"])
@pytest.mark.parametrize("length", [16, 31, 33, 64])
def test_a_key_of_the_wrong_length_is_refused(env: dict[str, str], name: str, length: int) -> None:
    value = b64(secrets.token_bytes(length))
    with pytest.raises(ConfigError, match=f"{name} must decode to 32 bytes, got {length}") as e:
        load({**env, name: value})
    assert value not in str(e.value)


@pytest.mark.parametrize("name", ["LEDGER_INGEST_BATCH_SIZE", "LEDGER_RELAY_BATCH_SIZE"])
@pytest.mark.parametrize(
    ("raw", "why"), [("0", "at least 1"), ("-5", "at least 1"), ("ten", "whole")]
)
def test_a_bad_batch_size_is_refused(env: dict[str, str], name: str, raw: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be .*{why}"):
        load({**env, name: raw})


def test_batch_sizes_are_read(env: dict[str, str]) -> None:
    settings = load({**env, "LEDGER_INGEST_BATCH_SIZE": "50", "LEDGER_RELAY_BATCH_SIZE": "7"})
    assert (settings.ingest_batch_size, settings.relay_batch_size) == (50, 7)


def test_the_purpose_check_memory_defaults_to_50000_references_and_may_be_off(
    env: dict[str, str],
) -> None:
    assert load(env).purpose_cache_subjects == 50_000
    assert load({**env, "LEDGER_PURPOSE_CACHE_SUBJECTS": "0"}).purpose_cache_subjects == 0
    assert load({**env, "LEDGER_PURPOSE_CACHE_SUBJECTS": "250"}).purpose_cache_subjects == 250
    for raw, why in (("-1", "at least 0"), ("lots", "whole number")):
        with pytest.raises(ConfigError, match=f"LEDGER_PURPOSE_CACHE_SUBJECTS must be .*{why}"):
            load({**env, "LEDGER_PURPOSE_CACHE_SUBJECTS": raw})


def test_the_fetch_wait_defaults_to_100_ms_and_is_read(env: dict[str, str]) -> None:
    assert load(env).kafka_fetch_wait_ms == 100
    assert load({**env, "LEDGER_KAFKA_FETCH_WAIT_MS": "10"}).kafka_fetch_wait_ms == 10
    with pytest.raises(ConfigError, match="LEDGER_KAFKA_FETCH_WAIT_MS must be"):
        load({**env, "LEDGER_KAFKA_FETCH_WAIT_MS": "0"})


@pytest.mark.parametrize(
    "schema", ["Ledger", "1ledger", "ledger-prod", "ledger;drop", "a" * 64, "lédger"]
)
def test_a_bad_schema_name_is_refused(env: dict[str, str], schema: str) -> None:
    with pytest.raises(ConfigError, match="LEDGER_DATABASE_SCHEMA"):
        load({**env, "LEDGER_DATABASE_SCHEMA": schema})


def test_a_bad_log_format_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="LEDGER_LOG_FORMAT"):
        load({**env, "LEDGER_LOG_FORMAT": "xml"})


def test_missing_services_and_keys_are_reported_when_needed(tmp_path: Path) -> None:
    settings = load({"LEDGER_DATA_DIR": str(tmp_path)})
    assert (settings.database_url, settings.kafka_bootstrap, settings.kek) == (None, None, None)
    with pytest.raises(ConfigError, match="LEDGER_DATABASE_URL"):
        settings.require_database()
    with pytest.raises(ConfigError, match="LEDGER_KAFKA_BOOTSTRAP"):
        settings.require_kafka()
    with pytest.raises(ConfigError, match="LEDGER_KEK"):
        settings.require_keys()


def _write_dev_state(data_dir: Path, state: object) -> None:
    (data_dir / "dev.json").write_text(json.dumps(state))


def test_the_dev_state_file_fills_only_what_the_environment_leaves_unset(
    tmp_path: Path,
) -> None:
    dev_kek, dev_lookup = secrets.token_bytes(32), secrets.token_bytes(32)
    _write_dev_state(
        tmp_path,
        {
            "LEDGER_DATABASE_URL": "postgresql://postgres@127.0.0.1:54329/postgres",
            "LEDGER_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
            "LEDGER_KEK": b64(dev_kek),
            "LEDGER_LOOKUP_KEY": b64(dev_lookup),
        },
    )
    own_kek = secrets.token_bytes(32)

    settings = load(
        {
            "LEDGER_DATA_DIR": str(tmp_path),
            "LEDGER_KAFKA_BOOTSTRAP": "kafka.internal:9092",
            "LEDGER_KEK": b64(own_kek),
        }
    )

    assert settings.database_url == "postgresql://postgres@127.0.0.1:54329/postgres"
    assert settings.kafka_bootstrap == "kafka.internal:9092"
    assert settings.require_keys() == (own_kek, dev_lookup)


def test_an_unreadable_dev_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text("{not json")
    assert load({"LEDGER_DATA_DIR": str(tmp_path)}).database_url is None
    _write_dev_state(tmp_path, ["LEDGER_DATABASE_URL"])
    assert load({"LEDGER_DATA_DIR": str(tmp_path)}).database_url is None


def test_settings_never_show_their_keys(env: dict[str, str]) -> None:
    settings = load(env)
    assert isinstance(settings, Settings)
    assert env["LEDGER_KEK"] not in repr(settings)
    assert str(KEK) not in repr(settings)
    assert str(LOOKUP) not in repr(settings)


def test_eventsourcing_env_points_at_the_configured_database(env: dict[str, str]) -> None:
    settings = load({**env, "LEDGER_DATABASE_SCHEMA": "t_abc"})
    es = settings.eventsourcing_env()
    assert (es["POSTGRES_HOST"], es["POSTGRES_PORT"], es["POSTGRES_DBNAME"]) == (
        "db.internal",
        "5432",
        "ledger",
    )
    assert (es["POSTGRES_USER"], es["POSTGRES_SCHEMA"]) == ("ledger", "t_abc")


def test_the_ingest_retention_defaults_to_a_week_and_is_read(env: dict[str, str]) -> None:
    assert load(env).ingest_retention == timedelta(days=7)
    assert load({**env, "LEDGER_INGEST_RETENTION": "36h"}).ingest_retention == timedelta(hours=36)
    with pytest.raises(ConfigError, match="LEDGER_INGEST_RETENTION must be a positive"):
        load({**env, "LEDGER_INGEST_RETENTION": "0d"})
