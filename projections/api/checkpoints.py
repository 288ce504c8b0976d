"""``GET /v1/checkpoints`` and ``GET /v1/checkpoint-key``: what an auditor holds the ledger to.

Checkpoints (``ledger.integrity.checkpoints``) need the ``auditor`` (or ``admin``) scope:
they cover the whole ledger, every tenant, and their sequence numbers tell how much was
recorded. The public key needs no API key at all: it opens nothing, an auditor may be
outside every tenant (a regulator), and a key is worth more the more widely it is known —
though an auditor should also pin it from a second channel, since a server one distrusts
could serve a key of its own. The API reads the public keys the signer stored; it never
holds the private key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query
from psycopg.sql import SQL, Identifier
from pydantic import BaseModel, Field

from ledger.integrity.checkpoint_store import from_row, with_cosignatures
from ledger.integrity.checkpoints import Checkpoint as Signed
from ledger.integrity.documents import signer_of
from ledger.integrity.notes import ED25519, VerifierKey
from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.problems import PROBLEM_RESPONSES, NotFound

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["audit"])
Ctx = Annotated[ApiContext, Depends(context)]
Auditor = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]


class Checkpoint(BaseModel):
    """A signed checkpoint, exactly as ``ledger audit verify --checkpoint FILE`` reads it."""

    version: int = 1
    sequence: int = Field(description="Ledger sequence of the last event covered.")
    head: str = Field(description="Chain hash at that sequence, hex (docs/audit.md).")
    time_us: int = Field(description="Signing time, microseconds since 1970-01-01 UTC.")
    time: str = Field(description="The same time, ISO 8601 UTC (not signed).")
    key_id: str
    signature: str = Field(description="Ed25519 signature, base64, over the signed bytes.")
    tree_size: int | None = Field(
        None,
        description="Leaves in the Merkle log at this checkpoint; null if signed before it.",
    )
    root: str | None = Field(None, description="The Merkle log's root at tree_size, base64.")
    note: str | None = Field(
        None,
        description="The tree head as a C2SP checkpoint (signed note), with the witness "
        "cosignatures received so far.",
    )


class CheckpointKey(BaseModel):
    key_id: str = Field(description="First 8 bytes of SHA-256 of the public key, hex.")
    algorithm: str = "Ed25519"
    public_key: str = Field(description="Raw Ed25519 public key (32 bytes), base64.")
    vkey: str = Field(
        description="The same key as a C2SP verifier key for the log's checkpoint notes, "
        "receipts and certificates: origin+key id+base64(0x01 ‖ key)."
    )


async def _rows(ctx: ApiContext, query: str, params: Sequence[Any]) -> list[Any]:
    schema = Identifier(ctx.settings.database_schema)
    try:
        async with ctx.connection() as conn:
            cur = await conn.execute(SQL(query).format(schema=schema), params)
            return await cur.fetchall()
    except psycopg.errors.UndefinedTable:  # no checkpoint has been signed yet
        return []


@router.get("/checkpoints", response_model=list[Checkpoint])
async def checkpoints(
    ctx: Ctx, who: Auditor, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[Checkpoint]:
    """Signed checkpoints, newest first (the first is the latest)."""
    return [Checkpoint(**s.to_json()) for s in await stored_checkpoints(ctx, limit)]


async def stored_checkpoints(
    ctx: ApiContext, limit: int, where: str = "TRUE", params: Sequence[Any] = ()
) -> list[Signed]:
    """Newest first, each note with its cosignatures (``checkpoint_store.CheckpointTable``);
    ``where`` is a condition on the table's columns."""
    rows = await _rows(
        ctx,
        f"SELECT * FROM {{schema}}.checkpoints WHERE {where} ORDER BY sequence DESC LIMIT %s",
        [*params, limit],
    )
    lines: dict[int, list[str]] = {}
    cosigned = await _rows(
        ctx,
        "SELECT sequence, line FROM {schema}.checkpoint_cosignatures "
        "WHERE sequence = ANY(%s) ORDER BY added_at, line",
        [[r["sequence"] for r in rows]],
    )
    for row in cosigned:
        lines.setdefault(row["sequence"], []).append(row["line"])
    return [with_cosignatures(from_row(r), lines.get(r["sequence"], [])) for r in rows]


@router.get("/checkpoint-key", response_model=list[CheckpointKey])
async def checkpoint_key(ctx: Ctx) -> list[CheckpointKey]:
    """Every public key checkpoints have been signed with (no API key needed)."""
    rows = await _rows(
        ctx, "SELECT key_id, public_key FROM {schema}.checkpoint_keys ORDER BY first_used", []
    )
    origin = ctx.settings.log_origin
    return [
        CheckpointKey(
            key_id=r["key_id"],
            public_key=base64.b64encode(bytes(r["public_key"])).decode(),
            vkey=str(VerifierKey(origin, ED25519, bytes(r["public_key"]))),
        )
        for r in rows
    ]


class DocumentKey(BaseModel):
    vkey: str = Field(
        description="The key receipts and certificates are signed with, as a C2SP verifier key "
        "(<origin>/documents+key id+base64(0x01 ‖ key))."
    )
    public_key: str = Field(description="Raw Ed25519 public key (32 bytes), base64.")


@router.get("/document-key", response_model=DocumentKey)
async def document_key(ctx: Ctx) -> DocumentKey:
    """The public key of the documents this server signs (no API key needed); 404 if it
    signs none."""
    s = ctx.settings
    signer = signer_of(s.document_key, s.checkpoint_key, s.log_origin)
    if signer is None:
        raise NotFound("this server signs no receipts or certificates (LEDGER_DOCUMENT_KEY)")
    return DocumentKey(
        vkey=str(signer.vkey), public_key=base64.b64encode(signer.vkey.public_key).decode()
    )
