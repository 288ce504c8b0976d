"""The code against the language-neutral vectors in ``tests/vectors/`` (what other
implementations of the producer contract check themselves against), and
``docs/fingerprints.md`` against the schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers import ingest
from ledger.client import message_key
from ledger.domain.values import Sealed
from ledger.keys import crypto_ingest
from ledger.keys.crypto import LocalKek, new_secret
from ledger.keys.crypto_ingest import IngestPrivateKey, IngestPublicKey
from ledger.keys.ingest_keys import IngestKeyring, IngestKeyRow, MemoryIngestKeyTable
from ledger.wire import avro, contract
from tests.vectors import make_vectors

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SEALED = json.loads((VECTORS / "sealed_ingest.json").read_text())
FINGERPRINTS = json.loads((VECTORS / "fingerprints.json").read_text())


def _private() -> IngestPrivateKey:
    keys = SEALED["ingest_private_key"]
    raw = bytes.fromhex(keys["x25519"] + keys["hybrid_mlkem768_seed"] + keys["hybrid_x25519"])
    return IngestPrivateKey(raw)


def _keyring() -> IngestKeyring:
    """A ledger keyring holding the vectors' key pair as its current key."""
    private = _private()
    kek = LocalKek(new_secret(), "kek-1")
    table = MemoryIngestKeyTable()
    key_id = SEALED["key_id"]
    table.add_first(
        IngestKeyRow(
            key_id=key_id,
            algorithm=private.algorithm,
            public_key=private.public_key_column(),
            kek_id="kek-1",
            wrapped_private=kek.wrap(private.raw(), b"ingest:" + key_id.encode()),
            created_at=datetime.now(UTC),
        )
    )
    return IngestKeyring(table, kek, new_secret())


def test_the_key_document_is_the_private_keys_public_half() -> None:
    document = IngestPublicKey.from_json(SEALED["key_document"])
    private = _private()
    assert document.public_key == private.public_key()
    assert document.hybrid_public_key == private.hybrid_public_key()
    assert document.key_id == SEALED["key_id"] and document.tenant == SEALED["tenant"]


@pytest.mark.parametrize("session", SEALED["sessions"], ids=lambda s: s["scheme"])
def test_a_session_secret_and_its_field_keys_derive_as_documented(session: dict[str, Any]) -> None:
    tenant, key_id = SEALED["tenant"], SEALED["key_id"]
    info = crypto_ingest.session_info(session["scheme"], key_id, tenant, session["started_at"])
    assert info.hex() == session["session_info"]
    header = crypto_ingest.SealSession(
        session["scheme"], key_id, session["started_at"], bytes.fromhex(session["sealed_secret"]), 0
    )
    secret = bytes.fromhex(session["secret"])
    prk = _private().open_session(tenant, header)
    assert prk == crypto_ingest.session_prk(secret) == bytes.fromhex(session["hkdf_prk"])
    for f in session["fields"]:
        f_info = crypto_ingest.field_info(key_id, tenant, f["event_id"], f["field"], f["message"])
        assert f_info.hex() == f["field_info"]
        assert crypto_ingest.field_key(prk, f_info).hex() == f["field_key"]
        nonce = bytes.fromhex(f["nonce"])
        sealed = crypto_ingest.seal_field(prk, f_info, f["plaintext"], nonce)
        assert sealed.hex() == f["nonce"] + f["ciphertext"]
        assert crypto_ingest.open_field(prk, f_info, nonce, sealed[12:]) == f["plaintext"]


def test_field_keys_are_rfc5869_hkdf_with_an_empty_salt() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    session = SEALED["sessions"][0]
    for f in session["fields"]:
        hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=bytes.fromhex(f["field_info"]))
        assert hkdf.derive(bytes.fromhex(session["secret"])).hex() == f["field_key"]


@pytest.mark.parametrize("message", SEALED["messages"], ids=lambda m: m["description"][:40])
def test_vector_messages_open_through_the_ingest_consumer(message: dict[str, Any]) -> None:
    value = bytes.fromhex(message["single_object"])
    assert value[:2] == b"\xc3\x01" and value[2:10].hex() == message["fingerprint"]
    sent_at = datetime.fromtimestamp(message["kafka_timestamp_ms"] / 1000, UTC)
    command = ingest.classify(value, _keyring(), sent_at=sent_at)
    assert isinstance(command, contract.Command), command
    env = command.envelope
    opened = {
        "event_id": env.event_id,
        "tenant": env.tenant,
        "subject_ref": env.subject_ref,
        "occurred_at": env.occurred_at.isoformat().replace("+00:00", "Z"),
        "producer": env.producer,
        **{k: (v.value if hasattr(v, "value") else v) for k, v in command.facts.items()},
        **command.personal,
    }
    assert opened == message["opens_to"]
    assert message_key(env.tenant, env.subject_ref, _routing()).decode() == message["kafka_key"]


def test_a_vector_message_is_refused_once_its_session_is_too_old() -> None:
    message = SEALED["messages"][0]
    late = datetime.fromtimestamp(message["kafka_timestamp_ms"] / 1000, UTC) + timedelta(hours=2)
    refused = ingest.classify(bytes.fromhex(message["single_object"]), _keyring(), sent_at=late)
    assert isinstance(refused, ingest.Rejection) and refused.reason == "ingest_session_exceeded"


def _routing() -> bytes:
    return IngestPublicKey.from_json(SEALED["key_document"]).routing_key


@pytest.mark.parametrize("case", SEALED["message_keys"], ids=lambda c: c["key"])
def test_message_keys(case: dict[str, Any]) -> None:
    routing = bytes.fromhex(case["routing_key"]) if case["routing_key"] else None
    assert message_key(case["tenant"], case["subject_ref"], routing).decode() == case["key"]


def test_a_v1_field_still_opens() -> None:
    v1 = SEALED["v1_field"]
    sealed = Sealed(
        v1["scheme"], SEALED["key_id"], bytes.fromhex(v1["nonce"]), bytes.fromhex(v1["ciphertext"])
    )
    opened = _keyring().open(SEALED["tenant"], v1["event_id"], v1["field"], sealed)
    assert opened == v1["plaintext"]


def test_every_accepted_schema_has_the_listed_fingerprint_and_canonical_form() -> None:
    assert make_vectors.fingerprints() == FINGERPRINTS
    accepted = avro._by_fingerprint()
    for row in FINGERPRINTS:
        for fingerprint in (row["fingerprint"], row["apache_python_fingerprint"]):
            assert accepted[bytes.fromhex(fingerprint)].name == row["schema"]


def test_a_message_with_apache_pythons_fingerprint_decodes() -> None:
    message = SEALED["messages"][-1]
    value = bytes.fromhex(message["single_object"])
    [row] = [
        r for r in FINGERPRINTS if r["schema"] == message["schema"] and r["version"] == "current"
    ]
    assert row["apache_python_fingerprint"] != row["fingerprint"]
    aliased = value[:2] + bytes.fromhex(row["apache_python_fingerprint"]) + value[10:]
    assert avro.decode(aliased)[1] == avro.decode(value)[1]


def test_docs_fingerprints_md_is_generated_from_the_schemas() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "fingerprints.md"
    assert docs.read_text() == make_vectors.fingerprints_markdown(make_vectors.fingerprints())
