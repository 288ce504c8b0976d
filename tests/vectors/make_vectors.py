"""Writes the test vectors in this directory and ``docs/fingerprints.md``.

    python -m tests.vectors.make_vectors

Run it only when the contract changes on purpose: the files are the contract's examples for
other implementations, and ``tests/unit/test_vectors.py`` holds the code to them. Sealing is
randomised (HPKE's ephemeral keys), so a new run writes other ciphertexts for the same
inputs; every value the vectors fix (keys, secrets, nonces, derived keys, message bytes) is
checked, and every sealed value must open to the plaintext given.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.client import message_key
from ledger.domain.values import LegalBasis
from ledger.keys import crypto_ingest
from ledger.keys.crypto_ingest import (
    SESSION_HYBRID,
    SESSION_X25519,
    IngestPrivateKey,
    IngestPublicKey,
)
from ledger.wire import avro, contract
from schemas import SCHEMA_DIR

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
TENANT = "acme"
KEY_ID = "ik-20261203-0a1b2c3d"
STARTED_AT_MS = 1_796_342_400_000  # 2026-12-03T00:00:00Z
OCCURRED_AT = datetime(2026, 12, 3, 0, 0, 1, 250_000, tzinfo=UTC)


def _bytes(label: str, size: int) -> bytes:
    """Deterministic 'random' bytes, so the vectors' inputs are reproducible."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"ledger test vector {label} {counter}".encode()).digest()
        counter += 1
    return out[:size]


def private_key() -> IngestPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

    # Raw X25519 keys are any 32 bytes (clamped on use); the ML-KEM key comes from its seed.
    x1 = x25519.X25519PrivateKey.from_private_bytes(_bytes("x25519", 32)).private_bytes_raw()
    seed = mlkem.MLKEM768PrivateKey.from_seed_bytes(_bytes("mlkem seed", 64)).private_bytes_raw()
    x2 = x25519.X25519PrivateKey.from_private_bytes(_bytes("hybrid x25519", 32)).private_bytes_raw()
    return IngestPrivateKey(x1 + seed + x2)


def public_key(private: IngestPrivateKey) -> IngestPublicKey:
    return IngestPublicKey(
        TENANT,
        KEY_ID,
        private.public_key(),
        _bytes("routing key", 32),
        hybrid_public_key=private.hybrid_public_key(),
    )


FIELDS = [
    ("7f0c1b7e-0000-4000-8000-000000000001", "envelope.subject_ref", 0, "alice@example.com"),
    ("7f0c1b7e-0000-4000-8000-000000000001", "ip_address", 0, "203.0.113.7"),
    ("7f0c1b7e-0000-4000-8000-000000000002", "evidence", 1, "Zoë signed form #4711 ✓"),
]


def session_vector(private: IngestPrivateKey, scheme: str, index: int) -> dict[str, Any]:
    key = public_key(private)
    secret = _bytes(f"session secret {index}", 32)
    info = crypto_ingest.session_info(scheme, KEY_ID, TENANT, STARTED_AT_MS)
    suite = crypto_ingest._SESSION_SUITES[scheme]
    sealed_secret = suite.encrypt(secret, crypto_ingest._public_key(key, scheme), info=info)
    prk = crypto_ingest.session_prk(secret)
    fields = []
    for n, (event_id, field, message, plaintext) in enumerate(FIELDS):
        f_info = crypto_ingest.field_info(KEY_ID, TENANT, event_id, field, message)
        nonce = _bytes(f"nonce {index} {n}", 12)
        sealed = crypto_ingest.seal_field(prk, f_info, plaintext, nonce)
        fields.append(
            {
                "event_id": event_id,
                "field": field,
                "message": message,
                "plaintext": plaintext,
                "field_info": f_info.hex(),
                "field_key": crypto_ingest.field_key(prk, f_info).hex(),
                "nonce": nonce.hex(),
                "ciphertext": sealed[12:].hex(),
            }
        )
    return {
        "scheme": scheme,
        "started_at": STARTED_AT_MS,
        "secret": secret.hex(),
        "session_info": info.hex(),
        "sealed_secret": sealed_secret.hex(),
        "hkdf_prk": prk.hex(),
        "fields": fields,
    }


def message_vectors(private: IngestPrivateKey) -> list[dict[str, Any]]:
    key = public_key(private)
    out = []
    for scheme in (SESSION_HYBRID, SESSION_X25519):
        sealer = crypto_ingest.SessionSealer(key, scheme=scheme, clock=lambda: STARTED_AT_MS / 1000)
        grant = contract.Command(
            "ConsentGranted",
            contract.Envelope(
                "7f0c1b7e-0000-4000-8000-00000000000a",
                TENANT,
                "alice@example.com",
                OCCURRED_AT,
                "signup-web",
            ),
            {"purpose": "newsletter", "consent_text_version": "2024-05", "source": "signup-form"},
            {"ip_address": "203.0.113.7", "user_agent": None, "evidence": None},
        )
        message = sealer.next_message()
        record = contract.seal_record(
            grant.kind,
            contract.record_from_command(grant),
            lambda field, text, m=message, e=grant.envelope.event_id: m.seal(e, field, text),
            message.session,
        )
        value = avro.encode(grant.kind, record)
        out.append(
            {
                "description": f"ConsentGranted, sealed in a {scheme} session (message 0)",
                "schema": "compliance.ConsentGranted",
                "fingerprint": avro.schema("ConsentGranted").fingerprint.hex(),
                "kafka_key": message_key(TENANT, "alice@example.com", key.routing_key).decode(),
                "kafka_timestamp_ms": STARTED_AT_MS + 1000,
                "single_object": value.hex(),
                "opens_to": {
                    "event_id": grant.envelope.event_id,
                    "tenant": TENANT,
                    "subject_ref": "alice@example.com",
                    "occurred_at": OCCURRED_AT.isoformat().replace("+00:00", "Z"),
                    "producer": "signup-web",
                    "purpose": "newsletter",
                    "consent_text_version": "2024-05",
                    "source": "signup-form",
                    "ip_address": "203.0.113.7",
                    "user_agent": None,
                    "evidence": None,
                },
            }
        )
    purpose = contract.Command(
        "PurposeDefined",
        contract.Envelope(
            "7f0c1b7e-0000-4000-8000-00000000000b", TENANT, None, OCCURRED_AT, "admin-console"
        ),
        {
            "purpose": "newsletter",
            "consent_text": "Send me the monthly newsletter.",
            "consent_text_version": "2024-05",
            "required": False,
            "legal_basis": LegalBasis.CONSENT,
            "description": "",
            "direct_marketing": True,
            "allowed_under_restriction": False,
        },
        {},
    )
    value = avro.encode(purpose.kind, contract.record_from_command(purpose))
    out.append(
        {
            "description": "PurposeDefined: a catalogue event, no personal value, no session",
            "schema": "compliance.PurposeDefined",
            "fingerprint": avro.schema("PurposeDefined").fingerprint.hex(),
            "kafka_key": message_key(TENANT, None).decode(),
            "kafka_timestamp_ms": STARTED_AT_MS + 1000,
            "single_object": value.hex(),
            "opens_to": {
                "event_id": purpose.envelope.event_id,
                "tenant": TENANT,
                "subject_ref": None,
                "occurred_at": OCCURRED_AT.isoformat().replace("+00:00", "Z"),
                "producer": "admin-console",
                "purpose": "newsletter",
                "consent_text": "Send me the monthly newsletter.",
                "consent_text_version": "2024-05",
                "required": False,
                "legal_basis": "CONSENT",
                "description": "",
                "direct_marketing": True,
                "allowed_under_restriction": False,
            },
        }
    )
    return out


def v1_vector(private: IngestPrivateKey) -> dict[str, Any]:
    key = public_key(private)
    event_id, field, plaintext = "7f0c1b7e-0000-4000-8000-000000000001", "ip_address", "203.0.113.7"
    sealed = crypto_ingest.seal(key, event_id, field, plaintext)
    return {
        "scheme": crypto_ingest.INGEST_SCHEME,
        "event_id": event_id,
        "field": field,
        "plaintext": plaintext,
        "info": crypto_ingest._info(KEY_ID, TENANT, event_id, field).hex(),
        "nonce": sealed.nonce.hex(),
        "ciphertext": sealed.ciphertext.hex(),
    }


def message_key_vectors() -> list[dict[str, Any]]:
    routing = _bytes("routing key", 32)
    return [
        {"tenant": TENANT, "subject_ref": ref, "routing_key": r and r.hex(), "key": key}
        for ref, r in (
            ("alice@example.com", routing),
            ("bob@example.com", routing),
            ("alice@example.com", None),
            (None, routing),
        )
        for key in [message_key(TENANT, ref, r).decode()]
    ]


def sealed_ingest() -> dict[str, Any]:
    private = private_key()
    key = public_key(private)
    return {
        "about": (
            "Sealed ingest v2 test vectors (docs/contract.md, 'Sealed ingest'). Bytes are hex. "
            "HPKE sealing is randomised: open sealed_secret with the private key and compare "
            "with secret; everything else is deterministic from the values given."
        ),
        "tenant": TENANT,
        "key_id": KEY_ID,
        "ingest_private_key": {
            "x25519": private.raw()[:32].hex(),
            "hybrid_mlkem768_seed": private.raw()[32:96].hex(),
            "hybrid_x25519": private.raw()[96:].hex(),
        },
        "key_document": key.as_json(),
        "sessions": [
            session_vector(private, SESSION_HYBRID, 0),
            session_vector(private, SESSION_X25519, 1),
        ],
        "messages": message_vectors(private),
        "message_keys": message_key_vectors(),
        "v1_field": v1_vector(private),
    }


def fingerprints() -> list[dict[str, Any]]:
    out = []
    for s in [*avro.registry().values(), *avro.earlier_versions()]:
        directory = SCHEMA_DIR if s.version == 0 else SCHEMA_DIR / f"v{s.version}"
        path = str(directory / f"{s.name}.avsc")
        apache = avro.apache_python_canonical_form(path)
        out.append(
            {
                "schema": s.name,
                "version": "current" if s.version == 0 else f"v{s.version}",
                "fingerprint": s.fingerprint.hex(),
                "canonical_form": avro.canonical_form(s.parsed),
                "apache_python_fingerprint": avro._fingerprint(apache).hex(),
            }
        )
    return out


def fingerprints_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Schema fingerprints",
        "",
        "Every schema the ledger accepts, with the fingerprint a single-object encoded message",
        "carries (bytes 3 to 10, as hex) and the parsing canonical form it is the CRC-64-AVRO of.",
        "`current` schemas are in `schemas/`; earlier versions, still accepted, in",
        "`schemas/v<N>/`.",
        "**Apache Python** is the fingerprint Apache's Python `avro` 1.12 computes where it",
        'differs (it keeps `{"type":"long"}` for a primitive with a logical type; see',
        "[the contract](contract.md#fingerprints)); the ledger accepts it as an alias.",
        "",
        "Generated by `python -m tests.vectors.make_vectors`; `tests/unit/test_vectors.py` holds",
        "it to the code.",
        "",
        "| schema | version | fingerprint | Apache Python |",
        "|---|---|---|---|",
    ]
    for r in rows:
        apache = r["apache_python_fingerprint"]
        alias = "" if apache == r["fingerprint"] else f"`{apache}`"
        lines.append(f"| `{r['schema']}` | {r['version']} | `{r['fingerprint']}` | {alias} |")
    lines += ["", "## Canonical forms", ""]
    for r in rows:
        lines += [
            f"### `{r['schema']}` ({r['version']}, `{r['fingerprint']}`)",
            "",
            "```json",
            r["canonical_form"],
            "```",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    (HERE / "sealed_ingest.json").write_text(
        json.dumps(sealed_ingest(), indent=2, ensure_ascii=False) + "\n"
    )
    rows = fingerprints()
    (HERE / "fingerprints.json").write_text(json.dumps(rows, indent=2) + "\n")
    (DOCS / "fingerprints.md").write_text(fingerprints_markdown(rows))


if __name__ == "__main__":
    main()
