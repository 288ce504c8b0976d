"""The client's optional librdkafka producer: the settings it gives librdkafka."""

from __future__ import annotations

import pytest

from ledger.client import LedgerClient
from ledger.kafka.librdkafka import librdkafka_config
from ledger.kafka.security import KafkaSecurity


def test_plaintext_keeps_the_producer_guarantees() -> None:
    config = librdkafka_config("k1:9092,k2:9092", KafkaSecurity())
    assert config["bootstrap.servers"] == "k1:9092,k2:9092"
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    assert config["partitioner"] == "murmur2_random"  # the Java client's, as kafka-python's
    assert config["delivery.report.only.error"] is True  # failures still reach flush()
    assert config["security.protocol"] == "plaintext"
    assert not any(k.startswith(("ssl.", "sasl.")) for k in config)


def test_tls_and_sasl_settings_map_to_librdkafkas_names() -> None:
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="producer",
        sasl_password="s3cret",
        ssl_cafile="/etc/kafka/ca.pem",
        ssl_certfile="/etc/kafka/client.pem",
        ssl_keyfile="/etc/kafka/client.key",
        ssl_key_password="k3y",
        ssl_check_hostname=False,
    )
    config = librdkafka_config("k1:9093", security)
    assert {k: v for k, v in config.items() if k.startswith(("ssl.", "sasl.", "security."))} == {
        "security.protocol": "sasl_ssl",
        "ssl.endpoint.identification.algorithm": "none",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.key.password": "k3y",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "producer",
        "sasl.password": "s3cret",
    }
    checked = librdkafka_config("k1:9093", KafkaSecurity(protocol="SSL"))
    assert checked["ssl.endpoint.identification.algorithm"] == "https"


def test_kafka_python_options_are_refused_with_librdkafka() -> None:
    with pytest.raises(ValueError, match="librdkafka_config"):
        LedgerClient("k1:9092", producer="crm", kafka_client="librdkafka", linger_ms=20)
    with pytest.raises(ValueError, match="kafka_client"):
        LedgerClient("k1:9092", producer="crm", kafka_client="java")
