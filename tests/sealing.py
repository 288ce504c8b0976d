"""Ingest messages as producers send them: sealed to the ledger's ingest key, or in clear."""

from __future__ import annotations

from dataclasses import replace

from ledger.keys import crypto_ingest
from ledger.keys.crypto_ingest import IngestPublicKey
from ledger.wire import avro, contract
from ledger.wire.contract import Command


def received_in_clear(cmd: Command) -> Command:
    """``cmd`` as the ledger decodes it from a plaintext message: every personal field that
    is not null marked as having arrived in clear."""
    fields = {name for name, value in cmd.personal.items() if value is not None}
    if cmd.envelope.subject_ref is not None:
        fields.add(contract.SUBJECT_REF_FIELD)
    return replace(cmd, plaintext_fields=frozenset(fields))


def plaintext_message(cmd: Command) -> bytes:
    return avro.encode(cmd.kind, contract.record_from_command(cmd))


def sealed_record(
    cmd: Command, key: IngestPublicKey, sealer: crypto_ingest.SessionSealer | None = None
) -> dict[str, object]:
    """Sealed ingest v2, in ``sealer``'s next message (a new session's first by default)."""
    message = (sealer or crypto_ingest.SessionSealer(key)).next_message()
    return contract.seal_record(
        cmd.kind,
        contract.record_from_command(cmd),
        lambda field, text: message.seal(cmd.envelope.event_id, field, text),
        message.session,
    )


def sealed_message(
    cmd: Command, key: IngestPublicKey, sealer: crypto_ingest.SessionSealer | None = None
) -> bytes:
    """What ``LedgerClient`` with ``ingest_key=key`` sends for ``cmd``."""
    return avro.encode(cmd.kind, sealed_record(cmd, key, sealer))


def sealed_record_v1(cmd: Command, key: IngestPublicKey) -> dict[str, object]:
    return contract.seal_record(
        cmd.kind,
        contract.record_from_command(cmd),
        lambda field, text: crypto_ingest.seal(key, cmd.envelope.event_id, field, text),
    )


def sealed_message_v1(cmd: Command, key: IngestPublicKey) -> bytes:
    """What a client of sealed ingest v1 sent for ``cmd``: v1 fields in a v1 envelope (the
    schema in ``schemas/v1/``, which has no ``seal_session``)."""
    record = sealed_record_v1(cmd, key)
    envelope = {k: v for k, v in record["envelope"].items() if k != "seal_session"}  # type: ignore[union-attr]
    return encode_v1(cmd.kind, {**record, "envelope": envelope})


def encode_v1(kind: str, record: dict[str, object]) -> bytes:
    """Single-object encoding with the v1 schema of ``kind``."""
    import io

    from fastavro import schemaless_writer
    from fastavro.schema import load_schema

    from schemas import SCHEMA_DIR

    path = SCHEMA_DIR / "v1" / f"compliance.{kind}.avsc"
    parsed = load_schema(str(path))
    buf = io.BytesIO()
    buf.write(avro.MAGIC)
    buf.write(avro._fingerprint(avro.canonical_form(parsed)))
    schemaless_writer(buf, parsed, record)
    return buf.getvalue()
