"""Signed documents: what the ledger states about a subject, with the ledger events it rests
on and their inclusion proofs, signed with the ledger's key. Consent receipts and erasure
certificates are documents (``receipts``, ``certificates``).

Rules this module keeps (``docs/audit.md``, "Signed documents"):

- **Every claim is evidenced.** Each event the document rests on is included with its
  stored columns, a *claim* read from them (type, tenant, subject, event id, recording time,
  purpose) and its inclusion proof in the tree of the document's checkpoint; a verifier
  recomputes the leaf and checks the claim against the stored state.
- **Verifiable after shredding.** Claims read only fields that stay in the clear; personal
  fields in the included states are ciphertext, unreadable without the subject's key, so the
  document holds nothing personal and verifies the same before and after an erasure.
- **Signed over canonical JSON**: ``"ledger-signed-document-v1\\n" ‖`` the object without
  ``signature``, keys sorted, no spaces, UTF-8, with the documents key
  (``LEDGER_DOCUMENT_KEY``), named by its vkey ``<origin>/documents+…``. It is not the
  checkpoint key: the API that issues documents never holds the key that signs history, and a
  stolen documents key forges no evidence, since every proof must reach a signed checkpoint.
- **Only against a signed tree.** A document is made only when a stored checkpoint's tree
  holds every event it rests on (:class:`NotYetCheckpointed` otherwise).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.domain.tenant import Tenant
from ledger.integrity import proofs
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.notes import ED25519, VerifierKey, check_name
from ledger.storage.chain import Row
from ledger.storage.store import LedgerStore

SIGNED_PREFIX = b"ledger-signed-document-v1\n"


class NotYetCheckpointed(LookupError):
    """An event the document rests on is newer than the newest signed tree head."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_type(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def state_of(row: Row) -> dict[str, Any]:
    found = json.loads(row[4])
    return found if isinstance(found, dict) else {}


def recorded_at(state: dict[str, Any]) -> str:
    stamp = state.get("timestamp")
    return str(stamp.get("_data_")) if isinstance(stamp, dict) else ""


def claim(row: Row) -> dict[str, Any]:
    """What a verifier checks against the event's stored state (non-personal fields only)."""
    state = state_of(row)
    made: dict[str, Any] = {
        "sequence": row[0],
        "event_type": event_type(row[3]),
        "tenant": state.get("tenant"),
        "subject_id": row[1],
        "event_id": state.get("event_id"),
        "recorded_at": recorded_at(state),
    }
    if isinstance(state.get("purpose"), str):
        made["purpose"] = state["purpose"]
    return made


def evidence(store: LedgerStore, rows: Sequence[Row], checkpoint: Checkpoint) -> list[Any]:
    """Each row with its claim and its inclusion proof in the checkpoint's tree."""
    size = checkpoint.tree_size
    assert size is not None and checkpoint.root is not None
    out = []
    for row in rows:
        index = store.leaf_index(row[0])
        if index is None or index >= size:
            raise NotYetCheckpointed(f"the event at sequence {row[0]} is in no signed tree yet")
        proof = proofs.inclusion(store, row[0], size)
        if proof.root != checkpoint.root or not proof.verifies():
            raise proofs.NotInTree("the stored tree differs from its signed checkpoint")
        out.append(
            {
                "claim": claim(row),
                "event": proof.to_json()["event"],
                "leaf_index": proof.index,
                "proof": [proofs.b64(h) for h in proof.path],
            }
        )
    return out


def covering(checkpoints: Sequence[Checkpoint], last: int) -> Checkpoint:
    """The newest checkpoint with a tree head that holds the event at sequence ``last``."""
    for checkpoint in sorted(checkpoints, key=lambda c: -c.sequence):
        if checkpoint.note is not None and checkpoint.sequence >= last:
            return checkpoint
    raise NotYetCheckpointed(
        f"the event at sequence {last} is newer than every signed checkpoint: it is signed at "
        "the next one (LEDGER_CHECKPOINT_EVERY / _INTERVAL, or `ledger audit checkpoint`)"
    )


class DocumentSigner:
    """The documents key: Ed25519, named ``<origin>/documents`` in its vkey."""

    def __init__(self, private_key: bytes, origin: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        raw = self._key.public_key().public_bytes_raw()
        self.vkey = VerifierKey(check_name(f"{origin}/documents"), ED25519, raw)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def signer_of(
    document_key: bytes | None, checkpoint_key: bytes | None, origin: str
) -> DocumentSigner | None:
    """The documents key, else the checkpoint key (a single host, as ``ledger dev`` is)."""
    key = document_key if document_key is not None else checkpoint_key
    return None if key is None else DocumentSigner(key, origin)


def sign(
    signer: DocumentSigner,
    kind: str,
    document: dict[str, Any],
    evidenced: list[Any],
    checkpoint: Checkpoint,
) -> dict[str, Any]:
    body = {
        "format": kind,
        "document": document,
        "evidence": evidenced,
        "checkpoint": checkpoint.note,
    }
    signature = signer.sign(SIGNED_PREFIX + canonical(body))
    return {
        **body,
        "signature": {
            "key": str(signer.vkey),
            "signature": base64.b64encode(signature).decode("ascii"),
        },
    }


def make(
    store: LedgerStore,
    signer: DocumentSigner,
    checkpoints: Sequence[Checkpoint],
    kind: str,
    document: dict[str, Any],
    rows: Sequence[Row],
) -> dict[str, Any]:
    """The signed document resting on ``rows``. Raises :class:`NotYetCheckpointed`."""
    checkpoint = covering(checkpoints, max((r[0] for r in rows), default=0))
    return sign(signer, kind, document, evidence(store, rows, checkpoint), checkpoint)


class NoSuchSubject(LookupError):
    """No subject with this id in this tenant."""


def subject_rows(store: LedgerStore, tenant: str, subject_id: UUID) -> list[Row]:
    """The subject's events, if it is the tenant's (else :class:`NoSuchSubject`)."""
    rows = store.aggregate_rows(subject_id)
    if not rows or state_of(rows[0]).get("tenant") != tenant or "Subject" not in rows[0][3]:
        raise NoSuchSubject("no such subject is recorded for your tenant")
    return rows


def tenant_rows(store: LedgerStore, tenant: str) -> list[Row]:
    return store.aggregate_rows(Tenant.create_id(tenant))
