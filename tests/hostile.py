"""Hostile ingest messages for property tests: what a broken or malicious producer can put on
the ingest topic. Shared by the unit properties (in-memory ledger) and the broker test.

Messages are written here without the producer client's checks, so they carry what Avro can
carry: wrong types, strings no rule allows, timestamps at the ends of a 64-bit long. (This
helper imports fastavro itself because it must write what ``ledger.wire.avro`` refuses to.)
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro.schema import UnknownType, fingerprint, to_parsing_canonical_form
from hypothesis import strategies as st

from ledger.wire import avro, contract
from ledger.wire.contract import Command
from tests import builders as b

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "contract.md"
INT64 = (-(2**63), 2**63 - 1)
YEAR_1_US, YEAR_9999_US = -62_135_596_800_000_000, 253_402_300_799_999_999


def documented_reasons() -> frozenset[str]:
    """The reason codes of the rejection table in docs/contract.md."""
    table = CONTRACT.read_text().split("| reason | when |", 1)[1].split("\n\n", 1)[0]
    return frozenset(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))


# Commands of every ingest type, about a subject the tests' ledger knows (catalogue: b.TENANT's
# "newsletter"), with personal values that look personal.
COMMANDS: list[Callable[[], Command]] = [
    lambda: b.define_purpose(description="Monthly news"),
    lambda: b.grant(b.REF, evidence="signed by Alice Example"),
    lambda: b.withdraw(b.REF, evidence="Alice Example phoned"),
    lambda: b.collect(b.REF, description="Alice Example's CV"),
    lambda: b.disclose(b.REF, note="alice.private@example.org"),
    lambda: b.erase(b.REF, reason="Alice Example moved"),
    lambda: b.hold(b.REF, note="Alice Example v. Acme"),
    lambda: b.release(b.REF),
]
PERSONAL_VALUES = (
    b.REF,
    b.IP,
    b.USER_AGENT,
    "Alice Example",
    "alice.private@example.org",
)
commands = st.sampled_from(COMMANDS).map(lambda make: make())

_SPECIAL = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "\t",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark, Hebrew
    "\ufeff",
    "\u200b",
    "👩\u200d👩\u200d👧\u200d👦",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "\U0010ffff",
    "e\u0301" * 50,
]
extreme_strings = st.one_of(
    st.sampled_from(_SPECIAL),
    st.text(max_size=40),
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from(["x", "é", "😀", "\x00", " "]),
        st.sampled_from([99, 100, 101, 199, 200, 201, 9_999, 10_000, 10_001, 40_000]),
    ),
)
extreme_micros = st.one_of(
    st.sampled_from([0, -1, 1, *INT64, YEAR_1_US, YEAR_1_US - 1, YEAR_9999_US, YEAR_9999_US + 1]),
    st.integers(*INT64),
)
# Values of the Avro types a producer might wrongly use for a field.
WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(*INT64),
    "double": st.floats(),
    "bytes": st.binary(max_size=40),
    "string": st.text(max_size=40),
    '{"type": "array", "items": "long"}': st.lists(st.integers(*INT64), max_size=5),
    '{"type": "map", "values": "string"}': st.dictionaries(
        st.text(max_size=5), st.text(max_size=5)
    ),
}


def raw_message(kind: str, record: Mapping[str, Any]) -> bytes:
    """``record`` as a single-object message of ``kind``, unchecked by the content rules."""
    schema = avro.schema(kind)
    return _write(schema.fingerprint, schema.parsed, record)


def _write(fp: bytes, parsed: Any, record: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(avro.MAGIC + fp)
    schemaless_writer(buf, parsed, dict(record))
    return buf.getvalue()


@cache
def field_paths(kind: str) -> list[str]:
    """The fields of an ingest type whose type can be swapped (not the one that defines a
    named type other fields use), envelope fields as ``envelope.NAME``."""
    raw = _canonical(kind)
    paths = []
    for f in raw["fields"]:
        if f["name"] == "envelope":
            paths += [f"envelope.{e['name']}" for e in f["type"]["fields"]]
        else:
            paths.append(f["name"])
    return [p for p in paths if _parses(_variant(kind, p, "null"))]


def with_wrong_type(
    kind: str, record: Mapping[str, Any], path: str, avro_type: str, value: Any, *, lie: bool
) -> bytes:
    """``record`` with the field at ``path`` written as ``avro_type``. With ``lie`` the message
    names the genuine schema's fingerprint (a producer with a doctored schema); otherwise the
    variant's own, which the ledger has never seen."""
    raw = _variant(kind, path, avro_type)
    target = copy.deepcopy(dict(record))
    target["envelope"]["occurred_at"] = _micros(target["envelope"]["occurred_at"])
    holder, name = target, path
    if path.startswith("envelope."):
        holder, name = target["envelope"], path.split(".", 1)[1]
    holder[name] = value
    own = bytes.fromhex(fingerprint(json.dumps(raw, sort_keys=True), "CRC-64-AVRO"))
    return _write(avro.schema(kind).fingerprint if lie else own, parse_schema(raw), target)


def _variant(kind: str, path: str, avro_type: str) -> dict[str, Any]:
    raw = _canonical(kind)
    fields, name = raw["fields"], path
    if path.startswith("envelope."):
        fields = next(f for f in fields if f["name"] == "envelope")["type"]["fields"]
        name = path.split(".", 1)[1]
    for f in fields:
        if f["name"] == name:
            f["type"] = json.loads(avro_type) if avro_type.startswith("{") else avro_type
    return raw


def _parses(raw: dict[str, Any]) -> bool:
    try:
        parse_schema(raw)
    except UnknownType:
        return False
    return True


def with_raw_text(kind: str, record: Mapping[str, Any], path: str, raw: bytes) -> bytes:
    """``record`` with the string at ``path`` replaced by arbitrary bytes (a lone surrogate in
    CESU form, invalid UTF-8): written with a same-length placeholder, then swapped in."""
    placeholder = "\x01" * len(raw)
    target = copy.deepcopy(dict(record))
    holder, name = target, path
    if path.startswith("envelope."):
        holder, name = target["envelope"], path.split(".", 1)[1]
    holder[name] = placeholder
    message = raw_message(kind, target)
    assert message.count(placeholder.encode()) == 1
    return message.replace(placeholder.encode(), raw)


def plaintext(cmd: Command) -> dict[str, Any]:
    return contract.record_from_command(cmd)


def _micros(value: datetime | int) -> int:
    # The canonical form drops logical types: a timestamp is written as its long.
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return value


def _canonical(kind: str) -> dict[str, Any]:
    canonical: dict[str, Any] = json.loads(to_parsing_canonical_form(avro.schema(kind).parsed))
    return canonical
