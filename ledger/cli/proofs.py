"""``ledger audit prove|consistency|receipt|certificate``: the Merkle log's proofs and the
signed documents resting on them, from the command line (``docs/audit.md``).

Each prints JSON (the same bodies as the API), or writes it to ``--out``; ``prove --tlog``
prints the c2sp.org/tlog-proof text instead. Exit 0, or 1 when what was asked for does not
exist (yet), 2 when the command cannot run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
import typer

from ledger.cli.audit import audit
from ledger.cli.common import fail, settings
from ledger.integrity import certificates, proofs, receipts
from ledger.integrity.checkpoint_store import CheckpointTable
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.documents import DocumentSigner, signer_of
from ledger.keys.ingest_keys_postgres import PostgresIngestKeyTable
from ledger.process.runtime import open_reader
from ledger.process.settings import Settings
from ledger.storage.postgres import PostgresLedgerRecorder
from ledger.storage.store import LedgerStore

T = TypeVar("T")
Out = Annotated[Path | None, typer.Option("--out", help="Write the JSON here, not stdout.")]
TenantArg = Annotated[str, typer.Argument(help="The tenant code.")]
SubjectArg = Annotated[UUID, typer.Argument(help="The subject id.")]


@contextmanager
def _ledger(s: Settings) -> Iterator[tuple[LedgerStore, list[Checkpoint]]]:
    """The event store and the checkpoints with a tree head, newest first."""
    with closing(open_reader(s)) as reader:
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            signed = CheckpointTable(conn, s.database_schema).all(limit=1, with_tree=True)
        yield reader.store, signed


def _answer(body: Any, out: Path | None) -> None:
    text = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        out.write_text(text + ("" if text.endswith("\n") else "\n"))
        typer.echo(f"wrote {out}")


def _signer(s: Settings) -> DocumentSigner:
    signer = signer_of(s.document_key, s.checkpoint_key, s.log_origin)
    if signer is None:
        fail("no documents key: receipts and certificates are signed with LEDGER_DOCUMENT_KEY")
    return signer


def _attempt(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (LookupError, ValueError) as exc:  # NotInTree, NoSuchSubject, NotCompleted, ...
        fail(str(exc), code=1)


@audit.command("prove")
def prove_command(
    sequence: Annotated[int | None, typer.Option(min=1, help="The event's sequence.")] = None,
    event_id: Annotated[str | None, typer.Option(help="The producer's event id.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant of --event-id.")] = None,
    tree_size: Annotated[
        int | None, typer.Option(min=1, help="Within this tree (default: the newest signed).")
    ] = None,
    tlog: Annotated[bool, typer.Option("--tlog", help="Print c2sp.org/tlog-proof text.")] = False,
    out: Out = None,
) -> None:
    """An inclusion proof of one event, against the newest signed tree that holds it."""
    if (sequence is None) == (event_id is None) or (event_id is not None and tenant is None):
        fail("give --sequence, or --event-id with --tenant")
    if any(not c.isprintable() for c in (event_id or "") + (tenant or "")):
        fail("--event-id and --tenant hold no control characters")
    s = settings()
    with _ledger(s) as (store, signed):
        if sequence is None:
            assert event_id is not None and tenant is not None
            sequence = store.event_sequence(tenant, event_id)
            if sequence is None:
                fail(f"tenant {tenant} recorded no event {event_id!r}", code=1)
        newest = signed[0] if signed else None
        size = tree_size or (newest.tree_size if newest else None)
        index = proofs.leaf_of(store, sequence)
        if size is not None and index is not None and index >= size and tree_size is None:
            size, newest = None, None  # newer than every checkpoint: the tree as it is now
        found = _attempt(lambda: proofs.inclusion(store, sequence, size))
    note = newest.note if newest is not None and newest.tree_size == found.size else None
    if tlog:
        if note is None:
            fail("no signed checkpoint of this tree size yet: run `ledger audit checkpoint`", 1)
        _answer(proofs.tlog_proof(found.index, found.path, note), out)
        return
    _answer({**found.to_json(), "checkpoint": note}, out)


@audit.command("consistency")
def consistency_command(
    first: Annotated[int, typer.Argument(min=0, help="The earlier tree size.")],
    second: Annotated[
        int | None, typer.Argument(min=0, help="The later one (default: the newest signed).")
    ] = None,
    out: Out = None,
) -> None:
    """A consistency proof: the tree of FIRST leaves is a prefix of the tree of SECOND."""
    s = settings()
    with _ledger(s) as (store, signed):
        if second is None:
            if not signed or signed[0].tree_size is None:
                fail("no checkpoint has a tree head yet: give SECOND", code=1)
            second = signed[0].tree_size
        proof = _attempt(lambda: proofs.consistency(store, first, second))
    _answer(proof.to_json(), out)


@audit.command("receipt")
def receipt_command(
    tenant: TenantArg,
    subject_id: SubjectArg,
    purpose: Annotated[
        str | None, typer.Argument(help="One purpose (default: every one: the export).")
    ] = None,
    out: Out = None,
) -> None:
    """A subject's signed consent receipt (ISO/IEC TS 27560), or every record for export."""
    s = settings()
    signer = _signer(s)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    with _ledger(s) as (store, signed):
        made = _attempt(
            lambda: receipts.issue(store, signer, signed, tenant, subject_id, created, purpose)
        )
    _answer(made, out)


@audit.command("certificate")
def certificate_command(
    tenant: TenantArg,
    subject_id: SubjectArg,
    out: Out = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Also write it as PDF here.")] = None,
) -> None:
    """The signed certificate of a subject's completed erasure (JSON, and PDF with --pdf)."""
    s = settings()
    signer = _signer(s)
    with _ledger(s) as (store, signed):
        keys = (
            PostgresIngestKeyTable(store.datastore).rows()
            if isinstance(store, PostgresLedgerRecorder)
            else []
        )
        made = _attempt(
            lambda: certificates.issue(
                store, signer, signed, tenant, subject_id, keys, s.ingest_retention
            )
        )
    if pdf is not None:
        from projections.reports import certificate_pdf  # reportlab only when asked for

        pdf.write_bytes(certificate_pdf.render(made))
        typer.echo(f"wrote {pdf}", err=True)
    _answer(made, out)


def register(app: typer.Typer) -> None:
    """The commands attach to ``ledger audit`` (registered by ``ledger.cli.audit``)."""
