"""``GET /v1/checkpoints/{sequence}/verification``: one checkpoint held to the ledger as it is.

Rules this route keeps:

- **The checks of ``ledger audit verify``, for one checkpoint, each named** with its verdict
  (``ledger.integrity``; nothing is re-implemented here):

  * ``signature`` — the Ed25519 signature over the checkpoint's bytes verifies under a
    published key (the keys ``GET /v1/checkpoint-key`` serves);
  * ``note`` — its C2SP signed note verifies under the log's key and states the checkpoint's
    own tree size and root;
  * ``events`` — the chain and the Merkle log, recomputed from genesis over the events as
    they are stored now, reach the checkpoint's head and root at its sequence;
  * ``consistency`` — the stored tree proves that the newest checkpoint's tree extends this
    one's (a consistency proof checked against both *signed* roots), and its roots are the
    signed ones;
  * ``witnesses`` — cosignatures that verify under the configured witness keys, against
    ``LEDGER_WITNESS_QUORUM``.

  ``verified`` is true only if every check passed.
- **Auditors and admins only**, like the checkpoints themselves.
- **Server work runs in the thread pool**: the recomputation reads every event up to the
  checkpoint; the proof reads a few dozen stored nodes. Nothing is written.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ledger.integrity import proofs, witnesses
from ledger.integrity.audit import WitnessPolicy, check_checkpoint
from ledger.integrity.checkpoints import Checkpoint, verify_signature
from ledger.integrity.notes import ED25519, Note, NoteError, VerifierKey, verify_checkpoint
from ledger.integrity.sources import store_items
from ledger.integrity.verify import verify
from ledger.process.settings import Settings
from ledger.storage.store import LedgerStore
from projections.api.access import Principal, Scope, require
from projections.api.checkpoints import checkpoint_key, stored_checkpoints
from projections.api.context import ApiContext, context
from projections.api.problems import PROBLEM_RESPONSES, NotFound

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["audit"])
Ctx = Annotated[ApiContext, Depends(context)]
Auditor = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]
MAX = 2**63 - 1
CheckName = Literal["signature", "note", "events", "consistency", "witnesses"]


class Check(BaseModel):
    name: CheckName
    ok: bool
    detail: str = Field(description="What was found, in words (nothing personal).")


class CheckpointVerification(BaseModel):
    sequence: int
    tree_size: int | None
    newest_sequence: int | None = Field(
        description="The newest checkpoint with a tree head: the consistency proof's target."
    )
    verified: bool = Field(description="Every check passed.")
    checks: list[Check] = Field(
        description="signature, note, events, consistency, witnesses; in that order."
    )


@router.get("/checkpoints/{sequence}/verification", response_model=CheckpointVerification)
async def checkpoint_verification(
    sequence: Annotated[int, Path(ge=1, le=MAX, description="The checkpoint's sequence.")],
    ctx: Ctx,
    who: Auditor,
) -> CheckpointVerification:
    """Verify one signed checkpoint against its published key, its note, the stored events,
    the newest checkpoint and the witness policy."""
    found = await stored_checkpoints(ctx, 1, "sequence = %s", [sequence])
    if not found:
        raise NotFound(f"no checkpoint was signed at sequence {sequence}")
    checkpoint = found[0]
    newest = next(iter(await stored_checkpoints(ctx, 1, "tree_size IS NOT NULL")), None)
    keys = [base64.b64decode(k.public_key) for k in await checkpoint_key(ctx)]
    stored = await run_in_threadpool(
        ctx.reads.call, lambda store: _against_store(store, checkpoint, newest)
    )
    checks = [
        _signature(checkpoint, keys),
        _note(checkpoint, keys, ctx.settings.log_origin),
        *stored,
        _witnesses(checkpoint, ctx.settings),
    ]
    return CheckpointVerification(
        sequence=checkpoint.sequence,
        tree_size=checkpoint.tree_size,
        newest_sequence=newest.sequence if newest else None,
        verified=all(c.ok for c in checks),
        checks=checks,
    )


def _signature(checkpoint: Checkpoint, keys: list[bytes]) -> Check:
    if any(verify_signature(checkpoint, k) for k in keys):
        return Check(name="signature", ok=True, detail=f"verifies under key {checkpoint.key_id}")
    detail = f"does not verify under any published key (signed with key {checkpoint.key_id})"
    return Check(name="signature", ok=False, detail=detail)


def _note(checkpoint: Checkpoint, keys: list[bytes], origin: str) -> Check:
    if checkpoint.note is None:
        return Check(name="note", ok=True, detail="signed before the Merkle log: no tree head")
    log_keys = [VerifierKey(origin, ED25519, k) for k in keys]
    try:
        head = verify_checkpoint(checkpoint.note, log_keys).head
    except NoteError as exc:
        return Check(name="note", ok=False, detail=f"the signed note does not verify: {exc}")
    if (head.size, head.root) != (checkpoint.tree_size, checkpoint.root):
        return Check(name="note", ok=False, detail="the note states another tree size or root")
    return Check(name="note", ok=True, detail=f"verifies and states tree size {head.size}")


def _against_store(
    store: LedgerStore, checkpoint: Checkpoint, newest: Checkpoint | None
) -> list[Check]:
    return [_events(store, checkpoint), _consistency(store, checkpoint, newest)]


def _events(store: LedgerStore, checkpoint: Checkpoint) -> Check:
    """The chain and the tree recomputed from genesis up to the checkpoint's sequence."""
    report = verify(store_items(store, stop=checkpoint.sequence), watch=[checkpoint.sequence])
    held = check_checkpoint(checkpoint, report, None, WitnessPolicy())
    problems = []
    if held.problem is not None:
        problems.append(held.problem)
    first = report.first
    if first is not None:
        problems.append(f"first problem at position {first.position}: {first.reason}")
    if problems:
        return Check(name="events", ok=False, detail="; ".join(problems))
    detail = f"{report.events} stored events recompute its chain head"
    if checkpoint.tree_size is not None:
        detail += " and its tree root"
    return Check(name="events", ok=True, detail=detail)


def _consistency(store: LedgerStore, checkpoint: Checkpoint, newest: Checkpoint | None) -> Check:
    if checkpoint.tree_size is None or checkpoint.root is None:
        return Check(name="consistency", ok=True, detail="no tree head: nothing to prove")
    if newest is None or newest.tree_size is None or newest.root is None:
        return Check(name="consistency", ok=False, detail="no newest tree head to prove against")
    if newest.tree_size < checkpoint.tree_size:
        detail = f"the newest checkpoint's tree ({newest.tree_size}) is smaller than this one's"
        return Check(name="consistency", ok=False, detail=detail)
    try:
        proof = proofs.consistency(store, checkpoint.tree_size, newest.tree_size)
    except proofs.NotInTree as exc:
        return Check(name="consistency", ok=False, detail=str(exc))
    signed = proofs.Consistency(proof.first, proof.second, checkpoint.root, newest.root, proof.path)
    if (proof.first_root, proof.second_root) != (checkpoint.root, newest.root):
        detail = "the stored tree's roots differ from the signed ones"
        return Check(name="consistency", ok=False, detail=detail)
    if not signed.verifies():
        detail = f"the proof from {proof.first} to {proof.second} leaves does not verify"
        return Check(name="consistency", ok=False, detail=detail)
    if newest.sequence == checkpoint.sequence:
        detail = "it is the newest checkpoint; the stored tree has its signed root"
    else:
        detail = f"the tree of {proof.second} leaves (sequence {newest.sequence}) extends it"
    return Check(name="consistency", ok=True, detail=detail)


def _witnesses(checkpoint: Checkpoint, settings: Settings) -> Check:
    try:
        keys = [w.key for w in witnesses.parse(settings.witnesses)]
    except NoteError as exc:
        return Check(name="witnesses", ok=False, detail=f"the witness keys are not valid: {exc}")
    quorum = settings.witness_quorum
    count = 0
    if checkpoint.note is not None:
        try:
            count = len(Note.parse(checkpoint.note).verified_by(keys))
        except NoteError as exc:
            return Check(name="witnesses", ok=False, detail=str(exc))
    detail = f"{count} of {len(keys)} configured witnesses cosigned; {quorum} required"
    return Check(name="witnesses", ok=count >= quorum, detail=detail)
