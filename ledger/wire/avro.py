"""Avro single-object encoding: the one module that imports fastavro.

Wire format (Avro specification, "Single-object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema's canonical form (8 bytes, LE) | body

The fingerprint selects the writer schema from ``schemas/``; no registry server is needed.
A message is decoded with exactly the schema that wrote it, and every byte of it must be
consumed, so truncated or padded messages are refused rather than half-read.

**Earlier versions.** ``schemas/v<N>/`` keeps every earlier version of the schemas the ledger
has accepted. A message written with one of them is decoded with its writer schema and
resolved to the current schema (Avro schema resolution: added fields take their defaults), so
the rest of the ledger sees one shape.

**Apache Avro's Python fingerprints.** Apache's Python ``avro`` (1.12) writes a primitive with
a logical type as ``{"type":"long"}`` in its parsing canonical form, where the specification,
Java and fastavro write ``"long"``: its fingerprint of every schema with a timestamp differs.
The body it writes is the same, so the ledger accepts that fingerprint too, as an alias of the
schema (:func:`apache_python_canonical_form`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form
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
    parsed: Any  # the writer schema
    fingerprint: bytes
    personal_fields: frozenset[str]
    version: int = 0  # 0: current; N: the copy in schemas/vN/
    reader: Any = None  # for an earlier version: the current schema it resolves to

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def _personal_fields(raw: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(f["name"] for f in raw.get("fields", ()) if f.get("personal") is True)


@cache
def registry() -> dict[str, Schema]:
    """All current schemas in ``schemas/``, by full name."""
    out: dict[str, Schema] = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        parsed = load_schema(str(path))
        name = path.name.removesuffix(".avsc")
        personal = _personal_fields(parsed) if isinstance(parsed, dict) else frozenset()
        out[name] = Schema(name, parsed, _fingerprint(canonical_form(parsed)), personal)
    return out


@cache
def earlier_versions() -> list[Schema]:
    """Every schema of ``schemas/v<N>/`` that differs from the current one, oldest first."""
    current = registry()
    out: list[Schema] = []
    dirs = sorted(SCHEMA_DIR.glob("v[0-9]*"), key=lambda d: int(d.name[1:]))
    for directory in dirs:
        for path in sorted(directory.glob("*.avsc")):
            name = path.name.removesuffix(".avsc")
            parsed = load_schema(str(path))
            fp = _fingerprint(canonical_form(parsed))
            now = current.get(name)
            if now is None or fp == now.fingerprint:
                continue
            version = int(directory.name[1:])
            out.append(
                replace(now, parsed=parsed, fingerprint=fp, version=version, reader=now.parsed)
            )
    return out


def canonical_form(parsed: Any) -> str:
    """The specification's parsing canonical form, whose CRC-64-AVRO is the fingerprint."""
    return str(to_parsing_canonical_form(parsed))


def apache_python_canonical_form(schema_path: str) -> str:
    """The canonical form Apache's Python ``avro`` 1.12 computes for a schema file: as the
    specification's, except that a primitive with a logical type stays ``{"type":"long"}``."""
    counter = iter(range(1_000_000))
    placeholders: dict[str, str] = {}

    def mark(node: Any) -> Any:
        if isinstance(node, dict):
            if "logicalType" in node and node.get("type") in _PRIMITIVES:
                name = f"zzapachelogical.p{next(counter)}"
                placeholders[name] = node["type"]
                return {"type": "fixed", "name": name, "size": 1}
            return {k: mark(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mark(v) for v in node]
        return node

    form = canonical_form(parse_schema(mark(_expanded(schema_path)), _write_hint=False))
    pattern = re.compile(r'\{"name":"(zzapachelogical\.p[0-9]+)","type":"fixed","size":1\}')
    return pattern.sub(
        lambda m: json.dumps({"type": placeholders[m.group(1)]}, separators=(",", ":")), form
    )


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _expanded(schema_path: str) -> Any:
    """The schema's JSON with every named type it references from other files inlined where
    it first appears (as ``load_schema`` does)."""
    directory = schema_path.rsplit("/", 1)[0]
    seen: set[str] = set()

    def inline(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            full = node if "." in node else f"{namespace}.{node}"
            if node in _PRIMITIVES or full in seen:
                return node
            try:
                with open(f"{directory}/{full}.avsc") as handle:
                    return inline(json.load(handle), namespace)
            except FileNotFoundError:
                return node
        if isinstance(node, list):
            return [inline(v, namespace) for v in node]
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                ns = node.get("namespace", namespace)
                full = node["name"] if "." in node["name"] else f"{ns}.{node['name']}"
                seen.add(full)
                namespace = ns
            return {
                k: (v if k in ("name", "namespace", "doc") else inline(v, namespace))
                for k, v in node.items()
            }
        return node

    with open(schema_path) as handle:
        return inline(json.load(handle), "")


def _fingerprint(form: str) -> bytes:
    return bytes.fromhex(fingerprint(form, "CRC-64-AVRO"))


@cache
def _by_fingerprint() -> dict[bytes, Schema]:
    out: dict[bytes, Schema] = {}
    for s, path in _all_with_paths():
        alias = _fingerprint(apache_python_canonical_form(str(path)))
        out.setdefault(alias, s)
    for s, _ in _all_with_paths():
        out[s.fingerprint] = s
    return out


def _all_with_paths() -> Iterator[tuple[Schema, Any]]:
    for s in earlier_versions():
        yield s, SCHEMA_DIR / f"v{s.version}" / f"{s.name}.avsc"
    for s in registry().values():
        yield s, SCHEMA_DIR / f"{s.name}.avsc"


def schema(name: str) -> Schema:
    try:
        return registry()[name if "." in name else f"compliance.{name}"]
    except KeyError:
        raise UnknownSchema(f"no schema named {name}") from None


def check(name: str, record: Mapping[str, Any]) -> None:
    """Raises :class:`InvalidRecord` naming the offending fields (values are not echoed)."""
    s = schema(name)
    try:
        # fastavro builds an error (with a JSON dump of the schema) for every union branch a
        # value does not match unless told not to: 8x the cost. Ask again for the reasons
        # only when the answer is no.
        if validate(record, s.parsed, raise_errors=False):
            return
        validate(record, s.parsed, raise_errors=True)
    except Exception as exc:
        fields = sorted({_field_of(str(e)) for e in getattr(exc, "errors", [exc])})
        raise InvalidRecord(
            f"{s.short_name} does not match its schema at: {', '.join(fields)}"
        ) from None


def _field_of(error: str) -> str:
    # fastavro reports "<path> is <value> of type <t> expected <schema>"; keep only the path.
    return error.split(" is ", 1)[0].strip() or "record"


def encode(name: str, record: Mapping[str, Any], *, checked: bool = False) -> bytes:
    """``checked``: the caller has checked ``record`` (or the record it was built from by
    code, such as sealing) with :func:`check`; fastavro still refuses what it cannot write."""
    s = schema(name)
    if not checked:
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
            buf, s.parsed, s.reader, return_record_name=True, return_record_name_override=True
        )
    except Exception as exc:
        raise UndecodableMessage(f"body does not decode as {s.short_name}") from exc
    if buf.tell() != len(message):
        raise UndecodableMessage(f"{len(message) - buf.tell()} trailing bytes after the record")
    if not isinstance(record, dict):
        raise UndecodableMessage("body is not a record")
    return s, record
