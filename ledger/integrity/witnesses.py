"""Witness cosignatures for each checkpoint, asked for with the C2SP tlog-witness protocol.

Rules this module keeps:

- **A witness is asked once per checkpoint**, right after it is stored: ``POST
  <url>/add-checkpoint`` with ``old <size>``, the consistency proof from the size the witness
  last cosigned, a blank line and the checkpoint. A 409 answer names the witness's size; the
  request is made once more from there.
- **Only cosignatures that verify under the configured key are kept**, beside the checkpoint
  (``checkpoint_cosignatures``); the size the witness cosigned is remembered.
- **A witness that is down or refuses delays nothing**: the checkpoint is already stored and
  published; the refusal is logged and the next checkpoint asks again. Verifiers that require
  a quorum of cosignatures refuse a checkpoint without it (``ledger.integrity.audit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import urllib3

from ledger.integrity import proofs
from ledger.integrity.checkpoint_store import CheckpointTable, with_cosignatures
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.notes import COSIGNATURE, Note, NoteError, VerifierKey, parse_signature_line
from ledger.plumbing.logs import get as get_logger
from ledger.storage.store import LedgerStore

TIMEOUT = urllib3.Timeout(connect=3.0, read=10.0)
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Witness:
    key: VerifierKey
    url: str

    @property
    def name(self) -> str:
        return self.key.name


def parse(pairs: tuple[tuple[str, str], ...]) -> list[Witness]:
    """The witnesses of ``Settings.witnesses``; raises NoteError for a key that is not an
    Ed25519 cosignature (type 0x04) verifier key."""
    out = []
    for vkey, url in pairs:
        key = VerifierKey.parse(vkey)
        if key.kind != COSIGNATURE:
            raise NoteError(f"witness {key.name}: a witness key is of type 0x04 (cosignature)")
        out.append(Witness(key, url.rstrip("/")))
    return out


class WitnessRefused(RuntimeError):
    pass


class Witnessing:
    def __init__(self, witnesses: list[Witness], http: urllib3.PoolManager | None = None) -> None:
        self.witnesses = witnesses
        self.http = http or urllib3.PoolManager(timeout=TIMEOUT, retries=False)
        self.log = get_logger("witnesses")
        self.cosigned = 0

    def cosign(
        self, store: LedgerStore, table: CheckpointTable, checkpoint: Checkpoint
    ) -> Checkpoint:
        """Asks every witness to cosign; returns the checkpoint with the cosignatures that
        came (:attr:`cosigned` says how many witnesses gave one)."""
        self.cosigned = 0
        if checkpoint.note is None or checkpoint.tree_size is None:
            return checkpoint
        lines: list[str] = []
        for witness in self.witnesses:
            try:
                got = self._ask(store, table, witness, checkpoint)
            except (WitnessRefused, urllib3.exceptions.HTTPError, NoteError, OSError) as exc:
                self.log.warning(
                    "witness_refused",
                    witness=witness.name,
                    url=witness.url,
                    tree_size=checkpoint.tree_size,
                    error=str(exc)[:300],
                )
                continue
            table.add_cosignatures(checkpoint.sequence, witness.name, got)
            table.set_witness_size(witness.name, checkpoint.tree_size)
            self.log.info("witness_cosigned", witness=witness.name, tree_size=checkpoint.tree_size)
            lines += got
            self.cosigned += 1
        return with_cosignatures(checkpoint, lines)

    def _ask(
        self, store: LedgerStore, table: CheckpointTable, witness: Witness, checkpoint: Checkpoint
    ) -> list[str]:
        assert checkpoint.note is not None and checkpoint.tree_size is not None
        old = table.witness_size(witness.name)
        for _ in range(2):
            if old > checkpoint.tree_size:
                raise WitnessRefused(f"the witness has seen {old} leaves, more than this tree")
            proof = proofs.consistency(store, old, checkpoint.tree_size).path
            body = "".join(
                [f"old {old}\n", *(proofs.b64(h) + "\n" for h in proof), "\n", checkpoint.note]
            )
            answer = self.http.request(
                "POST", witness.url + "/add-checkpoint", body=body.encode(), redirect=False
            )
            if answer.status == 409 and answer.headers.get("Content-Type", "").startswith(
                SIZE_TYPE
            ):
                old = int(answer.data.decode().strip())
                continue
            if answer.status != 200:
                raise WitnessRefused(f"HTTP {answer.status}: {answer.data[:200]!r}")
            return self._verified(witness, checkpoint.note, answer.data.decode())
        raise WitnessRefused("the witness's tree size changed twice while asking")

    @staticmethod
    def _verified(witness: Witness, note_text: str, answer: str) -> list[str]:
        note = Note.parse(note_text)
        lines = []
        for line in answer.splitlines(keepends=True):
            signature = parse_signature_line(line)
            if (signature.name, signature.id) != (witness.key.name, witness.key.id):
                continue  # another key of the witness: ignored, as the spec says
            if not witness.key.verify(note.body, signature.signature):
                raise NoteError(f"witness {witness.name} returned a cosignature that fails")
            lines.append(signature.line)
        if not lines:
            raise WitnessRefused("the answer holds no cosignature under the configured key")
        return lines
