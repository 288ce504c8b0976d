"""One-line explanations of a Kafka client that could not connect (``ledger.kafka.diagnosis``),
from the failures kafka-python logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, SaslAuthenticationFailedError

from ledger.kafka import diagnosis

BOOTSTRAP_FAILED = KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:9093']")


@pytest.fixture(autouse=True)
def recorder() -> Iterator[None]:
    diagnosis.install()
    diagnosis.forget()
    yield
    diagnosis.forget()


def _logged(exc: BaseException) -> None:
    logging.getLogger("kafka.net.connection").error("Connection lost: %s", exc)


def test_a_refused_login_names_the_sasl_variables_and_the_brokers_reason() -> None:
    _logged(
        SaslAuthenticationFailedError(
            "SaslAuthenticationFailedError: Authentication failed during authentication due to "
            "invalid credentials with SASL mechanism SCRAM-SHA-512"
        )
    )
    _logged(KafkaConnectionError("socket disconnected"))  # what follows says less

    said = diagnosis.explain(BOOTSTRAP_FAILED)

    assert said.startswith("the broker refused the SASL login (check LEDGER_KAFKA_SASL_USERNAME")
    assert said.endswith("invalid credentials with SASL mechanism SCRAM-SHA-512")
    assert "\n" not in said


def test_an_untrusted_certificate_names_the_ca_variable() -> None:
    _logged(
        KafkaConnectionError(
            "Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "self-signed certificate in certificate chain (_ssl.c:1006)"
        )
    )

    said = diagnosis.explain(BOOTSTRAP_FAILED)

    assert "TLS certificate is not trusted (check LEDGER_KAFKA_SSL_CAFILE" in said
    assert said.endswith(
        "certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)"
    )


def test_without_a_telling_failure_the_error_itself_is_the_explanation() -> None:
    _logged(KafkaConnectionError("111 ECONNREFUSED"))

    assert diagnosis.explain(BOOTSTRAP_FAILED) == (
        "KafkaTimeoutError: Unable to bootstrap from ['127.0.0.1:9093']"
    )


def test_install_is_idempotent() -> None:
    diagnosis.install()
    diagnosis.install()

    recorders = [h for h in logging.getLogger("kafka").handlers if type(h).__name__ == "_Recorder"]
    assert len(recorders) == 1
