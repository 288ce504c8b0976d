"""Kafka TLS and SASL settings: parsed once, checked as a whole, given to every client."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from ledger.kafka import admin, consumer, producer
from ledger.kafka.connection import connection_config
from ledger.kafka.security import KafkaSecurity, from_environment
from ledger.plumbing.secret_files import SettingError
from ledger.process.settings import ConfigError, load

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    made = {}
    for name, text in {
        "ca.pem": "CA",
        "client.pem": "CERT",
        "client.key": "KEY",
        "sasl_password": PASSWORD + "\n",
        "key_password": "k3y-pa55\n",
    }.items():
        (tmp_path / name).write_text(text)
        made[name] = str(tmp_path / name)
    return made


def test_the_default_is_plaintext_with_no_other_options() -> None:
    assert from_environment({}).client_config() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_with_a_password_file_and_client_certificate(files: dict[str, str]) -> None:
    security = from_environment(
        {
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "LEDGER_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "LEDGER_KAFKA_SASL_USERNAME": "ledger",
            "LEDGER_KAFKA_SASL_PASSWORD_FILE": files["sasl_password"],
            "LEDGER_KAFKA_SSL_CAFILE": files["ca.pem"],
            "LEDGER_KAFKA_SSL_CERTFILE": files["client.pem"],
            "LEDGER_KAFKA_SSL_KEYFILE": files["client.key"],
            "LEDGER_KAFKA_SSL_KEY_PASSWORD_FILE": files["key_password"],
        }
    )
    assert security.client_config() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": files["ca.pem"],
        "ssl_certfile": files["client.pem"],
        "ssl_keyfile": files["client.key"],
        "ssl_password": "k3y-pa55",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ledger",
        "sasl_plain_password": PASSWORD,  # the file's line end is not part of it
    }
    assert PASSWORD not in repr(security)
    assert "k3y-pa55" not in repr(security)


def test_ssl_uses_the_system_cas_without_a_cafile_and_can_skip_the_name_check() -> None:
    security = from_environment(
        {"LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL", "LEDGER_KAFKA_SSL_CHECK_HOSTNAME": "false"}
    )
    assert security.client_config() == {"security_protocol": "SSL", "ssl_check_hostname": False}


def test_sasl_plaintext_with_a_password_variable() -> None:
    config = from_environment(
        {
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LEDGER_KAFKA_SASL_MECHANISM": "PLAIN",
            "LEDGER_KAFKA_SASL_USERNAME": "ledger",
            "LEDGER_KAFKA_SASL_PASSWORD": PASSWORD,
        }
    ).client_config()
    assert config == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "ledger",
        "sasl_plain_password": PASSWORD,
    }


SASL = {
    "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "LEDGER_KAFKA_SASL_MECHANISM": "PLAIN",
    "LEDGER_KAFKA_SASL_USERNAME": "ledger",
    "LEDGER_KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEDGER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "LEDGER_KAFKA_SECURITY_PROTOCOL must be one"),
        ({**SASL, "LEDGER_KAFKA_SASL_MECHANISM": "GSSAPI"}, "LEDGER_KAFKA_SASL_MECHANISM must"),
        ({**SASL, "LEDGER_KAFKA_SASL_MECHANISM": ""}, "needs LEDGER_KAFKA_SASL_MECHANISM$"),
        ({**SASL, "LEDGER_KAFKA_SASL_USERNAME": ""}, "needs LEDGER_KAFKA_SASL_USERNAME$"),
        ({**SASL, "LEDGER_KAFKA_SASL_PASSWORD": ""}, r"needs LEDGER_KAFKA_SASL_PASSWORD \(or"),
        (
            {"LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs LEDGER_KAFKA_SASL_MECHANISM, LEDGER_KAFKA_SASL_USERNAME, LEDGER_KAFKA_SASL_PA",
        ),
        (
            {**SASL, "LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL"},
            "LEDGER_KAFKA_SASL_MECHANISM, LEDGER_KAFKA_SASL_USERNAME, LEDGER_KAFKA_SASL_PASSWORD "
            "set but LEDGER_KAFKA_SECURITY_PROTOCOL is SSL",
        ),
        (
            {"LEDGER_KAFKA_SASL_PASSWORD": PASSWORD},
            "LEDGER_KAFKA_SASL_PASSWORD set but LEDGER_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {**SASL, "LEDGER_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/x"},
            "set either LEDGER_KAFKA_SASL_PASSWORD or LEDGER_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                **SASL,
                "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "LEDGER_KAFKA_SSL_CHECK_HOSTNAME": "false",
            },
            "LEDGER_KAFKA_SSL_CHECK_HOSTNAME set but LEDGER_KAFKA_SECURITY_PROTOCOL is SASL_PLAIN",
        ),
        ({**SASL, "LEDGER_KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "must be true or false"),
    ],
)
def test_incomplete_or_contradictory_settings_are_refused_without_the_password(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingError, match=message) as raised:
        from_environment(env)
    assert PASSWORD not in str(raised.value)


def test_missing_or_empty_files_are_named(files: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(SettingError, match=f"LEDGER_KAFKA_SSL_CAFILE {missing} is not a file"):
        from_environment(
            {"LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL", "LEDGER_KAFKA_SSL_CAFILE": missing}
        )
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingError, match=r"LEDGER_KAFKA_SASL_PASSWORD_FILE .* is empty"):
        from_environment(
            {
                **SASL,
                "LEDGER_KAFKA_SASL_PASSWORD": "",
                "LEDGER_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "empty"),
            }
        )
    with pytest.raises(SettingError, match=r"LEDGER_KAFKA_SSL_KEYFILE needs .*CERTFILE"):
        from_environment(
            {
                "LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL",
                "LEDGER_KAFKA_SSL_KEYFILE": files["client.key"],
            }
        )


def test_settings_load_them_and_report_errors_as_config_errors(tmp_path: Path) -> None:
    env = {**SASL, "LEDGER_DATA_DIR": str(tmp_path)}
    assert load(env).kafka_security == from_environment(SASL)
    assert PASSWORD not in repr(load(env))
    with pytest.raises(ConfigError, match="needs LEDGER_KAFKA_SASL_USERNAME") as raised:
        load({**env, "LEDGER_KAFKA_SASL_USERNAME": ""})
    assert PASSWORD not in str(raised.value)


# Every client gets them: the factories in ledger.kafka are the only place clients are made.


class Recorder:
    def __init__(self, **config: Any) -> None:
        self.config = config


def test_producers_and_consumers_get_the_security_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(producer, "KafkaProducer", Recorder)
    monkeypatch.setattr(consumer, "KafkaConsumer", Recorder)
    security = from_environment(SASL)
    made = [
        producer.make_producer("k1:9093,k2:9093", security=security),
        consumer.make_consumer("k1:9093,k2:9093", group="g", security=security),
    ]
    for client in made:
        config = client.config  # type: ignore[attr-defined]
        assert {k: config[k] for k in connection_config("x", security)} == {
            "bootstrap_servers": ["k1:9093", "k2:9093"],
            **security.client_config(),
        }
    # Explicit kafka-python options (the producer client's **kafka_config) still win.
    override = producer.make_producer("k:9093", security=security, sasl_mechanism="PLAIN")
    assert override.config["sasl_mechanism"] == "PLAIN"  # type: ignore[attr-defined]


def test_without_an_explicit_security_the_process_environment_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(producer, "KafkaProducer", Recorder)
    config = producer.make_producer("k:9093").config  # type: ignore[attr-defined]
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_plain_password"] == PASSWORD


def test_admin_clients_get_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class FakeAdmin:
        def __init__(self, **config: Any) -> None:
            made.append(config)

        def close(self) -> None:
            pass

    monkeypatch.setattr(admin, "KafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(admin, "_any_accepts", lambda bootstrap, timeout_s: True)
    security = KafkaSecurity(protocol="SSL", ssl_check_hostname=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(admin.admin_client("k:9093", security=security))
    assert made[0]["security_protocol"] == "SSL"
    assert made[0]["ssl_check_hostname"] is False
    assert made[0]["bootstrap_servers"] == ["k:9093"]


def test_no_code_builds_a_kafka_client_outside_the_factories() -> None:
    """A client made elsewhere would miss the TLS and SASL settings."""
    pattern = re.compile(r"\bKafka(Producer|Consumer|AdminClient)\s*\(")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("ledger", "consumers", "projections")
        for path in (ROOT / folder).rglob("*.py")
        if path.parent != ROOT / "ledger" / "kafka" and pattern.search(path.read_text())
    ]
    assert offenders == []
