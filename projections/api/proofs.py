"""``GET /v1/proofs/inclusion`` and ``/v1/proofs/consistency``: the Merkle log's proofs.

Rules these routes keep (``docs/audit.md``, "Proofs"):

- **Auditors and admins only**, like checkpoints. An inclusion proof carries the event's
  stored form (personal fields are ciphertext), so it is given only for an event of the
  caller's own tenant; another tenant's event is answered as not found. Consistency proofs
  are hashes of the whole ledger, like checkpoints, and open to any auditor.
- **Against a signed tree by default**: the newest checkpoint whose tree holds the event,
  with its note and witness cosignatures, and the proof in c2sp.org/tlog-proof form too. An
  event newer than every checkpoint is proven against the tree as it is now, with
  ``checkpoint`` null: the next checkpoint signs that root.
- **A proof that does not lead to its checkpoint's root is never served**: that would mean
  the stored tree was changed; the answer is a 409 problem, and ``ledger audit verify`` says
  where.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ledger.integrity import proofs
from ledger.integrity.checkpoints import Checkpoint as Signed
from ledger.storage.store import LedgerStore
from projections.api.access import Principal, Scope, require
from projections.api.checkpoints import stored_checkpoints
from projections.api.context import ApiContext, context
from projections.api.models import NO_CONTROL
from projections.api.problems import PROBLEM_RESPONSES, BadRequest, Conflict, NotFound

router = APIRouter(prefix="/v1/proofs", responses=PROBLEM_RESPONSES, tags=["audit"])
Ctx = Annotated[ApiContext, Depends(context)]
Auditor = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]
T = TypeVar("T")
MAX = 2**63 - 1  # sequences and sizes are PostgreSQL bigints


class ProvenEvent(BaseModel):
    """The event's stored columns, from which the leaf is recomputed (docs/audit.md)."""

    originator_id: str
    originator_version: int
    topic: str
    state: str = Field(description="The stored state, base64 (personal fields sealed).")


class InclusionProof(BaseModel):
    sequence: int = Field(description="The event's position in the ledger.")
    leaf_index: int = Field(description="Its leaf in the Merkle log (0-based, no gaps).")
    tree_size: int
    root: str = Field(description="The tree's root at tree_size, base64.")
    event: ProvenEvent
    leaf_hash: str = Field(description="SHA-256(0x00 ‖ leaf), base64: recompute it.")
    proof: list[str] = Field(description="RFC 9162 audit path, base64, sibling first.")
    checkpoint: str | None = Field(
        description="The signed checkpoint (C2SP note) of tree_size; null if none is yet."
    )
    tlog_proof: str | None = Field(
        description="The same proof as c2sp.org/tlog-proof@v1 text, with the checkpoint."
    )


class ConsistencyProof(BaseModel):
    first: int = Field(description="The smaller tree size.")
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64.")
    first_checkpoint: str | None = Field(description="A signed checkpoint of size first.")
    second_checkpoint: str | None = Field(description="A signed checkpoint of size second.")


async def _checkpoint(ctx: ApiContext, size: int | None) -> Signed | None:
    """The checkpoint of this tree size (the newest with a tree if None)."""
    if size is None:
        found = await stored_checkpoints(ctx, 1, "tree_size IS NOT NULL")
    else:
        found = await stored_checkpoints(ctx, 1, "tree_size = %s", [size])
    return found[0] if found else None


async def _in_store(ctx: ApiContext, fn: Callable[[LedgerStore], T]) -> T:
    try:
        return await run_in_threadpool(ctx.reads.call, fn)
    except proofs.NotInTree as exc:
        raise NotFound(str(exc)) from None


@router.get("/inclusion", response_model=InclusionProof)
async def inclusion(
    ctx: Ctx,
    who: Auditor,
    sequence: Annotated[
        int | None, Query(ge=1, le=MAX, description="The event's sequence.")
    ] = None,
    event_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            pattern=NO_CONTROL,
            description="The producer's event id.",
        ),
    ] = None,
    tree_size: Annotated[
        int | None, Query(ge=1, le=MAX, description="Prove within this tree (default: see above).")
    ] = None,
) -> InclusionProof:
    """The proof that one event of the caller's tenant is in the Merkle log."""
    if (sequence is None) == (event_id is None):
        raise BadRequest("give exactly one of sequence and event_id")
    if sequence is None:
        assert event_id is not None
        sequence = await _in_store(ctx, lambda s: s.event_sequence(who.tenant, event_id))
        if sequence is None:
            raise NotFound(f"your tenant recorded no event {event_id!r}")
    signed = await _checkpoint(ctx, tree_size)
    size = tree_size
    if tree_size is None and signed is not None:
        size = signed.tree_size
    found = await _in_store(ctx, lambda s: _inclusion(s, sequence, size))
    if proofs.tenant_of(found.row[4]) != who.tenant:
        raise NotFound(f"your tenant recorded no event at sequence {sequence}")
    if signed is not None and signed.tree_size != found.size:
        signed = None  # the newest checkpoint does not hold it yet
    if signed is not None and signed.root != found.root:
        raise Conflict(
            "the stored tree differs from its signed checkpoint: run ledger audit verify"
        )
    body = found.to_json()
    note = signed.note if signed is not None else None
    tlog = None if note is None else proofs.tlog_proof(found.index, found.path, note)
    return InclusionProof(**body, checkpoint=note, tlog_proof=tlog)


def _inclusion(store: LedgerStore, sequence: int, size: int | None) -> proofs.Inclusion:
    """Within ``size`` if the event is in that tree, else within the whole tree now."""
    index = proofs.leaf_of(store, sequence)
    if size is not None and index is not None and index >= size:
        size = None
    return proofs.inclusion(store, sequence, size)


@router.get("/consistency", response_model=ConsistencyProof)
async def consistency(
    ctx: Ctx,
    who: Auditor,
    first: Annotated[int, Query(ge=0, le=MAX, description="The earlier tree size.")],
    second: Annotated[
        int | None,
        Query(ge=0, le=MAX, description="The later tree size (default: the newest checkpoint's)."),
    ] = None,
) -> ConsistencyProof:
    """The proof that the tree of ``first`` leaves is a prefix of the tree of ``second``."""
    if second is None:
        newest = await _checkpoint(ctx, None)
        if newest is None or newest.tree_size is None:
            raise NotFound("no checkpoint has a tree head yet: give second")
        second = newest.tree_size
    if first > second:
        raise BadRequest("first must not be more than second")
    proof = await _in_store(ctx, lambda s: proofs.consistency(s, first, second))
    body = proof.to_json()
    old, new = await _checkpoint(ctx, first), await _checkpoint(ctx, second)
    return ConsistencyProof(
        **body,
        first_checkpoint=old.note if old else None,
        second_checkpoint=new.note if new else None,
    )
