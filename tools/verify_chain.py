#!/usr/bin/env python3
"""Standalone verifier of ledger exports, proofs and signed documents: stdlib + cryptography.

It shares no code with the ledger on purpose: it follows docs/audit.md, so an auditor can
read it beside that document and trust neither the ledger's code nor its database.

    python verify_chain.py [EXPORT.jsonl] [--checkpoints FILE.jsonl]... [--public-key BASE64]...
        [--log-key VKEY]... [--witness-key VKEY]... [--quorum K]
        [--proof FILE]... [--leaf-event FILE] [--consistency OLD_NOTE NEW_NOTE]
        [--document FILE]...

EXPORT.jsonl is what ``ledger audit export`` writes; a checkpoints file has one checkpoint
(JSON, as served by ``GET /v1/checkpoints``) per line. A checkpoint with a "note" (a C2SP
signed note) is also checked against the Merkle tree recomputed over the export's events.
--proof takes an inclusion or consistency proof (JSON) or a c2sp.org/tlog-proof text (then
--leaf-event gives the event), --document a signed consent receipt or erasure certificate;
notes verify under the --log-key vkeys with --quorum K of the --witness-key vkeys (the
formats: docs/audit.md and tools/tlog.py). Exit status: 0 verified, 1 a problem (every check's
verdict is printed, then the first problem), 2 unusable input.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/tlog.py, from any directory
import tlog

GENESIS = bytes(32)


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def entry(seq: int, previous: int, row: dict) -> bytes:
    """docs/audit.md, "Chain": the bytes hashed after the previous hash."""
    originator = str(uuid.UUID(row["originator_id"]))  # canonical lower-case form
    return (
        b"ledger-chain-v1"
        + u64(seq)
        + u64(previous)
        + lp(originator.encode())
        + u64(int(row["originator_version"]))
        + lp(row["topic"].encode())
        + lp(base64.b64decode(row["state"], validate=True))
    )


def checkpoint_bytes(cp: dict) -> bytes:
    """docs/audit.md, "Checkpoints": the bytes the Ed25519 signature covers."""
    head = bytes.fromhex(cp["head"])
    assert len(head) == 32, "a head is 32 bytes"
    return b"ledger-checkpoint-v1" + u64(int(cp["sequence"])) + head + u64(int(cp["time_us"]))


def verify_export(
    lines: Iterable[str], leaves: list[tuple[int, bytes]] | None = None
) -> tuple[int, list[tuple[int, str]], dict[int, bytes]]:
    """Returns (events, problems as (position, reason), recomputed hash by sequence); appends
    (sequence, leaf hash) of every event to ``leaves`` (spec section 1) if given."""
    problems: list[tuple[int, str]] = []
    recomputed: dict[int, bytes] = {}
    running, last_event = GENESIS, 0  # the chain recomputed over the events as they are
    stored_seq, stored_hash = 0, GENESIS  # the previous stored link
    events = 0
    for line in lines:
        row = json.loads(line)
        seq = int(row["sequence"])
        has_event = row.get("event", "present") is not None
        has_link = row.get("hash") is not None
        if has_event:
            events += 1
            running = hashlib.sha256(running + entry(seq, last_event, row)).digest()
            last_event = seq
            recomputed[seq] = running
            if leaves is not None:
                leaves.append((seq, tlog.leaf_hash(tlog.leaf(seq, row))))
        if not has_event:
            problems.append((seq, "deleted: a chain link without its event"))
        elif not has_link:
            problems.append((seq, "unchained: an event without a chain link"))
        elif int(row["previous"]) > stored_seq:
            problems.append((int(row["previous"]), f"deleted: {seq} is chained to a missing event"))
        elif int(row["previous"]) < stored_seq:
            problems.append((stored_seq, f"inserted: {seq} is chained past it"))
        elif (
            hashlib.sha256(stored_hash + entry(seq, stored_seq, row)).digest().hex() != row["hash"]
        ):
            problems.append((seq, "changed: stored columns differ from what was chained"))
        if has_link:
            stored_seq, stored_hash = seq, bytes.fromhex(row["hash"])
    return events, problems, recomputed


def signed_by(cp: dict, key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(
            base64.b64decode(cp["signature"]), checkpoint_bytes(cp)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def check_checkpoint(cp: dict, recomputed: dict[int, bytes], keys: list[bytes]) -> str | None:
    """``keys``: the published keys trusted (old ones too, after a rotation); none: the
    signature is not checked."""
    if keys and not any(signed_by(cp, key) for key in keys):
        return "signature does not verify under any key given"
    seq = int(cp["sequence"])
    if seq not in recomputed:
        return "no event at its sequence"
    if recomputed[seq].hex() != cp["head"]:
        return "chain differs at its sequence"
    return None


class Policy:
    """Whom to trust (spec section 2): log vkeys, witness vkeys, and how many witnesses.
    (Not a dataclass: tests load this file without registering it as a module.)"""

    def __init__(self, log_keys: list[tlog.Vkey], witness_keys: list[tlog.Vkey], quorum: int):
        self.log_keys, self.witness_keys, self.quorum = log_keys, witness_keys, quorum

    def open(self, note: str) -> tlog.Opened:
        return tlog.open_checkpoint(note, self.log_keys, self.witness_keys, self.quorum)

    def note_problem(self, note: str, size: int, root: bytes) -> tuple[str | None, str]:
        """Section 2: (problem or None, description) of a note that must say (size, root)."""
        try:
            opened = self.open(note)
        except ValueError as exc:
            return str(exc), ""
        if opened.checkpoint.size != size:
            return f"the note is for tree size {opened.checkpoint.size}, not {size}", ""
        if opened.checkpoint.root != root:
            return f"the note's root differs from the root of the tree of size {size}", ""
        return None, f" ({opened.describe()})"


class Report:
    """Prints one verdict line per check and keeps the problems."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def check(self, label: str, problem: str | None, detail: str = "") -> bool:
        if problem is None:
            print(f"{label}: holds{detail}")
            return True
        print(f"{label}: DOES NOT HOLD: {problem}")
        self.problems.append((label, problem))
        return False


def check_note(
    cp: Mapping, leaves: list[tuple[int, bytes]], roots: dict[int, bytes], policy: Policy
) -> tuple[str | None, str]:
    """Sections 1-2: a checkpoint's note verifies, repeats its tree_size and root, and the
    tree recomputed over the export's events has that root at that size and ends with the
    event at the checkpoint's sequence."""
    try:
        opened = policy.open(cp["note"])
    except ValueError as exc:
        return f"note: {exc}", ""
    size, root = opened.checkpoint.size, opened.checkpoint.root
    if cp.get("tree_size") != size or cp.get("root") != base64.b64encode(root).decode():
        return "note: tree_size or root differs from the note's", ""
    if size > len(leaves):
        return f"note: tree size {size} exceeds the export's {len(leaves)} events", ""
    if roots.get(size) != root:
        return f"note: root differs from the tree recomputed at size {size}", ""
    if size == 0 or leaves[size - 1][0] != int(cp["sequence"]):
        return f"note: the tree of size {size} does not end at sequence {cp['sequence']}", ""
    return None, f" ({opened.describe()})"


def event_leaf(sequence: int, event: object) -> bytes:
    """Section 1: the hashed leaf of {"originator_id", "originator_version", "topic", "state"}."""
    if not isinstance(event, dict):
        raise ValueError("an event is not a JSON object")
    return tlog.leaf_hash(tlog.leaf(sequence, event))


def check_inclusion(
    label: str, proof: Mapping, policy: Policy, report: Report, leaf_event: bytes | None
) -> None:
    """Section 3 inclusion proof JSON: RFC 9162 2.1.3.2, and its notes (section 2)."""
    seq, index, size = (tlog.integer(proof, k) for k in ("sequence", "leaf_index", "tree_size"))
    root, path = tlog.b64hash(proof["root"]), tlog.hashes(proof, "proof")
    computed, stated = event_leaf(seq, proof["event"]), tlog.b64hash(proof["leaf_hash"])
    note, tlog_text = tlog.text_or_none(proof, "checkpoint"), tlog.text_or_none(proof, "tlog_proof")
    twin = tlog.parse_tlog_proof(tlog_text) if tlog_text is not None else None
    report.check(f"{label}: leaf hash", None if computed == stated else "the event's leaf differs")
    if leaf_event is not None:
        same = computed == leaf_event
        report.check(f"{label}: leaf event", None if same else "the proof is for another event")
    problem = tlog.verify_inclusion(index, size, computed, path, root)
    report.check(f"{label}: inclusion", problem, f" (sequence {seq}, leaf {index} of {size})")
    if twin is not None:
        same = (twin.index, twin.path) == (index, path) and note in (None, twin.note)
        report.check(f"{label}: tlog_proof", None if same else "differs from the JSON proof")
    for text in dict.fromkeys(t for t in (note, twin.note if twin else None) if t is not None):
        report.check(f"{label}: checkpoint", *policy.note_problem(text, size, root))
    if note is None and twin is None:
        print(f"warning: {label}: no checkpoint: its root is not signed", file=sys.stderr)


def check_tlog_proof(
    label: str, proof: tlog.TlogProof, hashed_leaf: bytes, policy: Policy, report: Report
) -> None:
    """Section 3 c2sp.org/tlog-proof: the leaf is at its index in its checkpoint's tree."""
    try:
        cp = tlog.parse_checkpoint(tlog.split_note(proof.note)[0])
    except ValueError as exc:
        report.check(f"{label}: checkpoint", str(exc))
        return
    problem = tlog.verify_inclusion(proof.index, cp.size, hashed_leaf, proof.path, cp.root)
    report.check(f"{label}: inclusion", problem, f" (leaf {proof.index} of {cp.size})")
    report.check(f"{label}: checkpoint", *policy.note_problem(proof.note, cp.size, cp.root))


def check_consistency(
    label: str, proof: Mapping, policy: Policy, report: Report, notes: list[str] | None
) -> None:
    """Section 3 consistency proof JSON: RFC 9162 2.1.4.2; with --consistency, the two notes
    (section 2) must say its first and second trees."""
    first, second = tlog.integer(proof, "first"), tlog.integer(proof, "second")
    old, new = tlog.b64hash(proof["first_root"]), tlog.b64hash(proof["second_root"])
    problem = tlog.verify_consistency(first, second, old, new, tlog.hashes(proof, "proof"))
    report.check(f"{label}: consistency", problem, f" (size {first} to {second})")
    if notes is not None:
        report.check(f"{label}: old checkpoint", *policy.note_problem(notes[0], first, old))
        report.check(f"{label}: new checkpoint", *policy.note_problem(notes[1], second, new))


def check_document(label: str, doc: Mapping, policy: Policy, report: Report) -> None:
    """Section 4: the signature, the checkpoint and every evidence item of a document."""
    if doc.get("format") not in tlog.DOCUMENT_FORMATS:
        raise ValueError(f"not a signed document: format {doc.get('format')!r}")
    key, signature = doc["signature"]["key"], tlog.b64(doc["signature"]["signature"])
    note, evidence = doc["checkpoint"], doc["evidence"]
    if not isinstance(note, str) or not isinstance(evidence, list):
        raise ValueError("'checkpoint' is not text or 'evidence' not a list")
    items = [(e, event_leaf(tlog.integer(e["claim"], "sequence"), e["event"])) for e in evidence]
    paths = [(tlog.integer(e, "leaf_index"), tlog.hashes(e, "proof")) for e in evidence]
    trusted = {k.text: k for k in policy.log_keys}
    if key not in trusted:
        problem: str | None = f"signed by {key!r}, not by a trusted log key"
    elif not tlog.ed25519_holds(trusted[key].public, signature, tlog.document_bytes(doc)):
        problem = "the signature does not verify"
    else:
        problem = None
    report.check(f"{label}: signature", problem, f" ({doc['format']}, by {key})")
    try:
        cp: tlog.Checkpoint | None = tlog.parse_checkpoint(tlog.split_note(note)[0])
    except ValueError:
        cp = None
    size, root = (cp.size, cp.root) if cp else (0, b"")
    report.check(f"{label}: checkpoint", *policy.note_problem(note, size, root))
    if not evidence:
        report.check(f"{label}: evidence", "the document rests on no event")
    for n, ((item, hashed), (index, path)) in enumerate(zip(items, paths, strict=True)):
        claim = item["claim"]
        what = f"{label}: evidence {n} (sequence {claim['sequence']}, {claim.get('event_type')})"
        problem = tlog.verify_inclusion(index, size, hashed, path, root) if cp else "no tree"
        report.check(what, problem or tlog.claim_problem(claim, item["event"]))


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        value = json.load(f)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a JSON object")
    return value


def read_note(path: str) -> str:
    """A checkpoint note, from a note file or a checkpoint JSON with a "note"."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        text = json.loads(text)["note"]
    if not isinstance(text, str):
        raise ValueError(f"{path}: no note")
    return text


def check_inputs(args: argparse.Namespace, policy: Policy, report: Report) -> None:
    """--proof, --consistency and --document; raises ValueError, KeyError, TypeError or
    OSError on unusable input."""
    leaf_event = None
    if args.leaf_event:
        event = read_json(args.leaf_event)
        leaf_event = event_leaf(tlog.integer(event, "sequence"), event)
    notes = [read_note(path) for path in args.consistency] if args.consistency else None
    consistency_proofs = 0
    for path in args.proof:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        label = f"proof {path}"
        if text.startswith(tlog.TLOG_PROOF + "\n"):
            if leaf_event is None:
                raise ValueError(f"{path}: a tlog-proof needs --leaf-event")
            check_tlog_proof(label, tlog.parse_tlog_proof(text), leaf_event, policy, report)
            continue
        proof = json.loads(text)
        if not isinstance(proof, dict):
            raise ValueError(f"{path}: not a JSON object")
        if "first" in proof and "second" in proof:
            consistency_proofs += 1
            check_consistency(label, proof, policy, report, notes)
        else:
            check_inclusion(label, proof, policy, report, leaf_event)
    if notes is not None and not consistency_proofs:
        raise ValueError("--consistency needs a consistency proof (--proof FILE)")
    for path in args.document:
        check_document(f"document {path}", read_json(path), policy, report)


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", nargs="?", help="what `ledger audit export` wrote")
    parser.add_argument(
        "--checkpoints", action="append", default=[], metavar="FILE", help="checkpoint JSON lines"
    )
    parser.add_argument(
        "--public-key", action="append", default=[], help="raw Ed25519 public key, base64"
    )
    more = {"action": "append", "default": [], "metavar": "VKEY"}
    parser.add_argument("--log-key", **more, help="a trusted log's vkey (type 0x01)")
    parser.add_argument("--witness-key", **more, help="a witness's vkey (type 0x04)")
    parser.add_argument("--quorum", type=int, default=0, metavar="K", help="witnesses a note needs")
    parser.add_argument(
        "--proof",
        "--proof-json",
        action="append",
        default=[],
        metavar="FILE",
        help="an inclusion or consistency proof (JSON) or a c2sp.org/tlog-proof text",
    )
    parser.add_argument(
        "--leaf-event",
        metavar="FILE",
        help="the event (JSON) the proofs are for: needed by a tlog-proof, checked by the others",
    )
    parser.add_argument(
        "--consistency",
        nargs=2,
        metavar=("OLD_NOTE", "NEW_NOTE"),
        help="checkpoint notes the consistency proof's first and second trees must match",
    )
    parser.add_argument(
        "--document",
        action="append",
        default=[],
        metavar="FILE",
        help="a signed consent receipt or erasure certificate",
    )
    args = parser.parse_args(argv)
    if not (args.export or args.proof or args.document):
        parser.error("give an export, --proof or --document")
    if args.checkpoints and not args.export:
        parser.error("--checkpoints needs an export")
    if not 0 <= args.quorum <= len(args.witness_key):
        parser.error("--quorum K needs at least K --witness-key")
    if args.document and not args.log_key:
        parser.error("--document needs the trusted --log-key")
    return args


def main(argv: list[str]) -> int:
    args = arguments(argv)
    report, events = Report(), 0
    problems: list[tuple[int, str]] = []
    leaves: list[tuple[int, bytes]] = []
    recomputed: dict[int, bytes] = {}
    checkpoints: list[dict] = []
    try:
        keys = [base64.b64decode(k, validate=True) for k in args.public_key]
        policy = Policy(
            [tlog.parse_vkey(k, tlog.ED25519) for k in args.log_key],
            [tlog.parse_vkey(k, tlog.COSIGNATURE) for k in args.witness_key],
            args.quorum,
        )
        if args.export:
            with open(args.export, encoding="utf-8") as export:
                events, problems, recomputed = verify_export(export, leaves)
        for path in args.checkpoints:
            with open(path, encoding="utf-8") as f:
                checkpoints += [json.loads(line) for line in f if line.strip()]
        sizes = [cp.get("tree_size") for cp in checkpoints if cp.get("note") is not None]
        roots = tlog.roots_at((h for _, h in leaves), [s for s in sizes if isinstance(s, int)])
        for cp in checkpoints:
            problem, detail = check_checkpoint(cp, recomputed, keys), ""
            if cp.get("note") is not None:
                note_problem, detail = check_note(cp, leaves, roots, policy)
                problem = problem or note_problem
            verdict = f"holds{detail}" if problem is None else f"DOES NOT HOLD: {problem}"
            print(f"checkpoint at {cp['sequence']}: {verdict}")
            if problem is not None:
                problems.append((int(cp["sequence"]), f"checkpoint: {problem}"))
        check_inputs(args, policy, report)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: unusable input: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.export:
        last = max(recomputed) if recomputed else 0
        print(f"{events} events up to sequence {last}; head {recomputed.get(last, GENESIS).hex()}")
    if not keys and checkpoints:
        print("warning: no --public-key: signatures not checked", file=sys.stderr)
    if not policy.log_keys and (args.proof or any(cp.get("note") for cp in checkpoints)):
        print("warning: no --log-key: log signatures of notes not checked", file=sys.stderr)
    total = len(problems) + len(report.problems)
    if not total:
        print("OK")
        return 0
    if problems:
        position, reason = min(problems)
        print(f"FAILED at position {position}: {reason} ({total} problem(s))")
    else:
        label, reason = report.problems[0]
        print(f"FAILED: {label}: {reason} ({total} problem(s))")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
