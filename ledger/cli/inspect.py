"""``ledger subject show`` and ``ledger topic tail``: look at what was recorded and published.

Personal fields print as ``[sealed]`` unless ``--decrypt`` is given; a shredded subject's
fields print as ``[erased]``.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import typer

from ledger.cli import common
from ledger.cli.common import fail, settings
from ledger.domain.values import Sealed
from ledger.kafka.consumer import TopicPartition, make_consumer
from ledger.process.settings import ConfigError
from ledger.wire import avro

subject = typer.Typer(help="Look at a data subject's recorded events.", no_args_is_help=True)
topic = typer.Typer(help="Read the ledger's Kafka topics.", no_args_is_help=True)

_SKIP = {"originator_id", "originator_version", "originator_topic"}


@subject.command("show")
def show(
    tenant: Annotated[str, typer.Option(help="Tenant code.")],
    ref: Annotated[str, typer.Option(help="The upstream reference of the subject.")],
    decrypt: Annotated[bool, typer.Option(help="Show personal fields in clear.")] = False,
) -> None:
    """Print a subject's events, current consents and erasure state."""
    ledger = common.ledger()
    try:
        found = ledger.find_subject(tenant, ref)
        if found is None and ledger.reference_erased(tenant, ref):
            fail(f"that reference belonged to a subject of {tenant!r} who has been erased", code=1)
        if found is None:
            fail(f"tenant {tenant!r} has no subject with that reference", code=1)
        typer.secho(f"subject {found.id} (tenant {found.tenant})", bold=True)
        for event in ledger.subject_events(found.id):
            name = type(event).__name__
            typer.echo(
                f"  v{event.originator_version} {name} recorded {event.timestamp:%Y-%m-%d %H:%M:%S}"
            )
            for key, value in vars(event).items():
                if key in _SKIP or key == "timestamp" or value is None:
                    continue
                if isinstance(value, Sealed):
                    value = _personal(ledger, found.id, key, value, decrypt)
                typer.echo(f"      {key}: {_plain(value)}")
        typer.secho("current consents:", bold=True)
        for purpose, consent in sorted(found.consents.items()):
            state = "granted" if consent.granted else "withdrawn"
            typer.echo(f"  {purpose}: {state} (text v{consent.version}, event {consent.event_id})")
        if found.erasure_requested_at:
            typer.secho(f"erasure requested at {found.erasure_requested_at}", fg="yellow")
        if found.legal_holds:
            typer.secho(f"legal holds: {', '.join(sorted(found.legal_holds))}", fg="yellow")
    finally:
        ledger.close()


def _personal(ledger: Any, subject_id: Any, key: str, value: Sealed, decrypt: bool) -> str:
    if not decrypt:
        return "[sealed]"
    plain = ledger.keys.open(subject_id, key, value)
    return "[erased]" if plain is None else plain


def _plain(value: object) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


@topic.command("tail")
def tail(
    name: Annotated[str, typer.Argument(help="ledger, rejected or ingest.")],
    limit: Annotated[int, typer.Option(help="Stop after this many messages.")] = 100,
    wait: Annotated[float, typer.Option(help="Seconds to wait for more messages.")] = 2.0,
) -> None:
    """Print a topic's messages from the beginning, decoded; personal fields stay sealed."""
    s = settings()
    names = {"ledger": s.topics.ledger, "rejected": s.topics.rejected, "ingest": s.topics.ingest}
    if name not in names:
        fail("topic must be one of: ledger, rejected, ingest")
    try:
        bootstrap = s.require_kafka()
    except ConfigError as exc:
        fail(str(exc))
    consumer = make_consumer(bootstrap, group=None)
    try:
        partitions = consumer.partitions_for_topic(names[name]) or set()
        consumer.assign([TopicPartition(names[name], p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        printed = 0
        deadline = time.monotonic() + wait
        while printed < limit and time.monotonic() < deadline:
            batch = [r for records in consumer.poll(timeout_ms=200).values() for r in records]
            for record in batch[: limit - printed]:
                typer.echo(json.dumps(_describe(record), default=str))
                printed += 1
            if batch:
                deadline = time.monotonic() + wait
    finally:
        consumer.close()


def _describe(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"partition": record.partition, "offset": record.offset}
    out["headers"] = {k: v.decode(errors="replace") for k, v in record.headers or []}
    try:
        schema, value = avro.decode(record.value or b"")
    except (avro.UndecodableMessage, avro.UnknownSchema) as exc:
        out["undecodable"] = str(exc)
        return out
    out["schema"] = schema.short_name
    out["value"] = _redact(_hide_personal(schema, value))
    return out


def _hide_personal(schema: avro.Schema, value: dict[str, Any]) -> dict[str, Any]:
    """Ingest messages (and rejected ones) may hold personal values in clear: never print them."""
    hidden = {k: "[personal]" if k in schema.personal_fields and v else v for k, v in value.items()}
    envelope = hidden.get("envelope")
    if isinstance(envelope, dict) and envelope.get("subject_ref"):
        hidden["envelope"] = {**envelope, "subject_ref": "[personal]"}
    return hidden


def _redact(value: Any) -> Any:
    """Sealed records print as their key id; bytes never print."""
    if isinstance(value, tuple):
        return {value[0].rsplit(".", 1)[-1]: _redact(value[1])}
    if isinstance(value, dict):
        if {"scheme", "key_id", "ciphertext"} <= value.keys():
            return {"sealed": value["key_id"]}
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if is_dataclass(value):
        return {f.name: _redact(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, bytes | bytearray):  # a sealing session's secret, for one
        return f"<{len(value)} bytes>"
    return value


def register(app: typer.Typer) -> None:
    app.add_typer(subject, name="subject")
    app.add_typer(topic, name="topic")
