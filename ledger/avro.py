"""Avro single-object encoding: the one module that imports fastavro.

Wire format (Avro specification, "Single-object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema's canonical form (8 bytes, LE) | body

The fingerprint selects the writer schema from ``schemas/``; no registry server is needed.
A message is decoded with exactly the schema that wrote it, and every byte of it must be
consumed, so truncated or padded messages are refused rather than half-read.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.validation import validate

from schemas import SCHEMA_DIR

MAGIC = b"\xc3\x01"
HEADER_LENGTH = len(MAGIC) + 8


class UndecodableMessage(ValueError):
    """The bytes are not an Avro single-object message we can read to the end."""


class UnknownSchema(ValueError):
    """The message names a writer schema (by fingerprint) that the ledger does not know."""


class InvalidRecord(ValueError):
    """A record does not conform to its Avro schema. Carries field paths, never values."""


@dataclass(frozen=True)
class Schema:
    name: str  # full name, e.g. "compliance.ConsentGranted"
    parsed: Any
    fingerprint: bytes
    personal_fields: frozenset[str]

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def _personal_fields(raw: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(f["name"] for f in raw.get("fields", ()) if f.get("personal") is True)


@cache
def registry() -> dict[str, Schema]:
    """All schemas in ``schemas/``, by full name."""
    out: dict[str, Schema] = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        parsed = load_schema(str(path))
        name = path.name.removesuffix(".avsc")
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        personal = _personal_fields(parsed) if isinstance(parsed, dict) else frozenset()
        out[name] = Schema(name, parsed, fp, personal)
    return out


@cache
def _by_fingerprint() -> dict[bytes, Schema]:
    return {s.fingerprint: s for s in registry().values()}


def schema(name: str) -> Schema:
    try:
        return registry()[name if "." in name else f"compliance.{name}"]
    except KeyError:
        raise UnknownSchema(f"no schema named {name}") from None


def check(name: str, record: Mapping[str, Any]) -> None:
    """Raises :class:`InvalidRecord` naming the offending fields (values are not echoed)."""
    s = schema(name)
    try:
        validate(record, s.parsed, raise_errors=True)
    except Exception as exc:
        fields = sorted({_field_of(str(e)) for e in getattr(exc, "errors", [exc])})
        raise InvalidRecord(
            f"{s.short_name} does not match its schema at: {', '.join(fields)}"
        ) from None


def _field_of(error: str) -> str:
    # fastavro reports "<path> is <value> of type <t> expected <schema>"; keep only the path.
    return error.split(" is ", 1)[0].strip() or "record"


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    s = schema(name)
    check(name, record)
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(s.fingerprint)
    schemaless_writer(buf, s.parsed, dict(record))
    return buf.getvalue()


def decode(message: bytes) -> tuple[Schema, dict[str, Any]]:
    """Returns the writer schema and the record. Raises UndecodableMessage or UnknownSchema."""
    if len(message) < HEADER_LENGTH or message[:2] != MAGIC:
        raise UndecodableMessage("not Avro single-object encoding (missing C3 01 marker)")
    s = _by_fingerprint().get(message[2:HEADER_LENGTH])
    if s is None:
        raise UnknownSchema(f"unknown writer schema fingerprint {message[2:HEADER_LENGTH].hex()}")
    buf = io.BytesIO(message)
    buf.seek(HEADER_LENGTH)
    try:
        record = schemaless_reader(
            buf, s.parsed, None, return_record_name=True, return_record_name_override=True
        )
    except Exception as exc:
        raise UndecodableMessage(f"body does not decode as {s.short_name}") from exc
    if buf.tell() != len(message):
        raise UndecodableMessage(f"{len(message) - buf.tell()} trailing bytes after the record")
    if not isinstance(record, dict):
        raise UndecodableMessage("body is not a record")
    return s, record
