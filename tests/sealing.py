"""Ingest messages as producers send them: sealed to the ledger's ingest key, or in clear."""

from __future__ import annotations

from dataclasses import replace

from ledger import avro, contract, crypto_ingest
from ledger.contract import Command
from ledger.crypto_ingest import IngestPublicKey


def received_in_clear(cmd: Command) -> Command:
    """``cmd`` as the ledger decodes it from a plaintext message: every personal field that
    is not null marked as having arrived in clear."""
    fields = {name for name, value in cmd.personal.items() if value is not None}
    if cmd.envelope.subject_ref is not None:
        fields.add(contract.SUBJECT_REF_FIELD)
    return replace(cmd, plaintext_fields=frozenset(fields))


def plaintext_message(cmd: Command) -> bytes:
    return avro.encode(cmd.kind, contract.record_from_command(cmd))


def sealed_record(cmd: Command, key: IngestPublicKey) -> dict[str, object]:
    return contract.seal_record(
        cmd.kind,
        contract.record_from_command(cmd),
        lambda field, text: crypto_ingest.seal(key, cmd.envelope.event_id, field, text),
    )


def sealed_message(cmd: Command, key: IngestPublicKey) -> bytes:
    """What ``LedgerClient`` with ``ingest_key=key`` sends for ``cmd``."""
    return avro.encode(cmd.kind, sealed_record(cmd, key))
