"""An audit: the chain verified from one source, and checkpoints held against it.

A checkpoint *holds* if its signature verifies under the published key and the chain,
recomputed from genesis over the events as they are now, has the checkpoint's head at the
checkpoint's sequence: nothing at or before it was changed, removed, inserted or reordered.
A checkpoint with a tree head must also have its signed note verify (and carry the witness
cosignatures the policy requires), and the Merkle log recomputed over the same events must
have the note's size and root at the checkpoint's sequence.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ledger.integrity import proofs
from ledger.integrity.checkpoints import Checkpoint, verify_signature
from ledger.integrity.notes import (
    ED25519,
    Note,
    NoteError,
    TreeHead,
    VerifierKey,
    verify_checkpoint,
)
from ledger.integrity.verify import Item, Problem, Report, verify
from ledger.storage.store import LedgerStore


@dataclass(frozen=True)
class WitnessPolicy:
    """Which witnesses an auditor knows, and how many must have cosigned each checkpoint."""

    keys: list[VerifierKey] = field(default_factory=list)
    quorum: int = 0


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint: Checkpoint
    problem: str | None  # None: it holds

    @property
    def holds(self) -> bool:
        return self.problem is None


@dataclass
class Audit:
    source: str
    report: Report
    seconds: float
    checkpoints: list[CheckpointResult] = field(default_factory=list)
    extra: list[Problem] = field(default_factory=list)  # found beside the chain

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.extra and all(c.holds for c in self.checkpoints)

    @property
    def first(self) -> Problem | None:
        bad = [
            Problem(c.checkpoint.sequence, "checkpoint", c.problem)
            for c in self.checkpoints
            if c.problem is not None
        ]
        found = [*self.report.problems, *bad, *self.extra]
        return min(found, key=lambda p: p.position) if found else None

    def lines(self) -> list[str]:
        r = self.report
        out = [
            f"{self.source}: {r.events:,} events, {r.links:,} chain links, up to sequence "
            f"{r.last:,}, verified in {self.seconds:.2f} s",
            f"recomputed chain head: {r.recomputed_head.hex()}",
            f"recomputed Merkle log: {r.tree.size:,} leaves, root {r.tree.root().hex()}",
        ]
        for c in self.checkpoints:
            verdict = "holds" if c.problem is None else f"DOES NOT HOLD: {c.problem}"
            out.append(f"checkpoint at {c.checkpoint.sequence:,} ({c.checkpoint.time}): {verdict}")
        first = self.first
        if first is None:
            out.append(
                "OK: the chain verifies" + (" and every checkpoint holds" * bool(self.checkpoints))
            )
            return out
        out.append(f"FAILED at position {first.position}: {first.reason} — {first.detail}")
        problems = r.problem_count + len(self.extra) + sum(not c.holds for c in self.checkpoints)
        listed = sorted([*r.problems, *self.extra], key=lambda p: p.position)[:20]
        out.append(f"{problems} problem(s); the first {len(listed)}:")
        out += [f"  {p.position}: {p.reason} — {p.detail}" for p in listed]
        return out


def check_checkpoint(
    checkpoint: Checkpoint,
    report: Report,
    public_keys: Sequence[bytes] | None,
    witnesses: WitnessPolicy | None = None,
) -> CheckpointResult:
    """``public_keys``: the published keys the auditor trusts (after a key rotation, the old
    ones too); the signature must verify under one of them. None: signatures not checked.
    ``witnesses``: the cosignatures a checkpoint's note must carry."""
    if public_keys is not None and not any(verify_signature(checkpoint, k) for k in public_keys):
        problem = (
            "the signature does not verify under any key given "
            f"(signed with key {checkpoint.key_id})"
        )
        return CheckpointResult(checkpoint, problem)
    recomputed = report.recomputed_at.get(checkpoint.sequence)
    if recomputed is None:
        problem = f"the ledger holds no event at sequence {checkpoint.sequence}"
        return CheckpointResult(checkpoint, problem)
    if recomputed != checkpoint.head:
        problem = "the chain at its sequence differs: history before it was changed"
        return CheckpointResult(checkpoint, problem)
    return CheckpointResult(checkpoint, _tree_problem(checkpoint, report, public_keys, witnesses))


def _tree_problem(
    checkpoint: Checkpoint,
    report: Report,
    public_keys: Sequence[bytes] | None,
    witnesses: WitnessPolicy | None,
) -> str | None:
    policy = witnesses or WitnessPolicy()
    if checkpoint.note is None:
        if policy.quorum:
            return f"it has no tree head for the {policy.quorum} witness cosignatures required"
        return None  # signed before the Merkle log existed: the chain alone vouches for it
    try:
        if public_keys is None:  # signatures not checked: the tree head is still compared
            note = Note.parse(checkpoint.note)
            head = TreeHead.parse(note.body)
            if len(note.verified_by(policy.keys)) < policy.quorum:
                return f"fewer than the {policy.quorum} witness cosignatures required verify"
        else:
            origin = checkpoint.note.split("\n", 1)[0]
            keys = [VerifierKey(origin, ED25519, k) for k in public_keys]
            head = verify_checkpoint(checkpoint.note, keys, policy.keys, policy.quorum).head
    except NoteError as exc:
        return f"its tree head does not verify: {exc}"
    if (head.size, head.root) != (checkpoint.tree_size, checkpoint.root):
        return "its note and its tree head differ"
    if report.tree_at.get(checkpoint.sequence) != (head.size, head.root):
        return "the Merkle log at its sequence differs: history before it was changed"
    return None


def stored_tree_problems(store: LedgerStore, report: Report) -> list[Problem]:
    """Whether the stored Merkle log (what proofs are served from) is the one the events
    make. Run after a verification from genesis. Every stored node must be the hash of its
    two stored children, and the stored root the recomputed one: then, short of a SHA-256
    collision, every stored node is the one the events make. Integrates the events verified
    that the tree does not hold yet, first."""
    if report.last_event:
        store.grow_tree(report.last_event)
    size = store.tree_size(report.last_event) if report.last_event else 0
    if size != report.tree.size:
        detail = f"the stored tree has {size:,} leaves, the events make {report.tree.size:,}"
        return [Problem(report.last_event, "tree", detail)]
    bad = proofs.first_bad_node(store, 0, size)
    if bad is not None:
        level, index = bad
        leaf = store.leaf_sequence(index << level) or report.last_event
        detail = f"the stored node at level {level}, index {index} is not its children's hash"
        return [Problem(leaf, "tree", detail)]
    if size and proofs.root(store, size) != report.tree.root():
        detail = "the stored tree's root differs from the one the events make"
        return [Problem(report.last_event, "tree", detail)]
    return []


def run(
    source: str,
    items: Iterable[Item],
    checkpoints: Sequence[Checkpoint] = (),
    public_keys: Sequence[bytes] | None = None,
    extra: Sequence[Problem] = (),
    witnesses: WitnessPolicy | None = None,
) -> Audit:
    started = time.perf_counter()
    report = verify(items, watch=[c.sequence for c in checkpoints])
    results = [check_checkpoint(c, report, public_keys, witnesses) for c in checkpoints]
    return Audit(source, report, time.perf_counter() - started, results, list(extra))
