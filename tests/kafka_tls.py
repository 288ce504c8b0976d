"""TLS and SASL for an Apache Kafka node started by the tests: a certificate authority made
here, a broker certificate it signs, and the broker properties of a ``SASL_SSL`` listener that
authenticates with SCRAM-SHA-512.

The CA lives only in the test's temporary directory; the broker's certificate names
``127.0.0.1`` and ``localhost``, so clients verify it host name included. Key and certificate
go to the broker as PEM files (``ssl.keystore.type=PEM``), no Java keystore tool needed.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LISTENER = "SECURE"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate clients trust
    keystore: Path  # the broker's private key and certificate chain, PEM
    other_ca: Path  # a CA that signed nothing the broker shows: an untrusting client's


def make_pki(directory: Path) -> Pki:
    """A CA, a broker certificate for 127.0.0.1/localhost signed by it, and a second,
    unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("ledger test CA")
    _, other_cert = _ca("some other CA")
    broker_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-broker")]))
        .issuer_name(ca_cert.subject)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "broker.pem", directory / "other-ca.pem")
    pki.ca.write_bytes(_pem(ca_cert))
    pki.other_ca.write_bytes(_pem(other_cert))
    key = broker_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pki.keystore.write_bytes(key + _pem(broker_cert) + _pem(ca_cert))
    return pki


def broker_properties(pki: Pki) -> dict[str, str]:
    """The properties of a ``SECURE`` listener: TLS with the PEM keystore, SASL/SCRAM-SHA-512.
    The brokers keep talking to each other on PLAINTEXT."""
    prefix = f"listener.name.{LISTENER.lower()}"
    return {
        "sasl.enabled.mechanisms": MECHANISM,
        f"{prefix}.sasl.enabled.mechanisms": MECHANISM,
        f"{prefix}.{MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        f"{prefix}.ssl.keystore.type": "PEM",
        f"{prefix}.ssl.keystore.location": str(pki.keystore),
        f"{prefix}.ssl.truststore.type": "PEM",
        f"{prefix}.ssl.truststore.location": str(pki.ca),
        f"{prefix}.ssl.client.auth": "none",
    }


def add_scram(user: str, password: str) -> list[str]:
    """``kafka-storage format`` arguments that create a SCRAM-SHA-512 user."""
    return ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]


def client_environ(pki: Pki, bootstrap: str, user: str, password: str) -> dict[str, str]:
    """The ``LEDGER_KAFKA_*`` variables of a ledger process on the secure listener (README)."""
    return {
        "LEDGER_KAFKA_BOOTSTRAP": bootstrap,
        "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LEDGER_KAFKA_SASL_MECHANISM": MECHANISM,
        "LEDGER_KAFKA_SASL_USERNAME": user,
        "LEDGER_KAFKA_SASL_PASSWORD": password,
        "LEDGER_KAFKA_SSL_CAFILE": str(pki.ca),
    }


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
