"""Tamper evidence and proofs: the hash chain and the Merkle log verified, signed checkpoints
and their witnesses, proofs, and the signed documents that rest on them.

Owns the verification of a chain of stored events (``verify``; the one definition of a link is
``ledger.storage.chain``, of the Merkle log ``ledger.storage.merkle``), what a verification
reads from the store (``sources``), signed checkpoints and their C2SP notes (``checkpoints``,
``notes``), their table and the process step that writes and publishes them
(``checkpoint_store``, ``checkpointer``), witness cosignatures (``witnesses``), inclusion and
consistency proofs (``proofs``), the audit of a checkpoint (``audit``) and of the ledger topic
against the chain (``topic``), and signed documents: consent receipts and erasure
certificates (``documents``, ``receipts``, ``certificates``). May import
``ledger.application``, ``ledger.wire``, ``ledger.keys``, ``ledger.storage``,
``ledger.kafka``, ``ledger.domain`` and ``ledger.plumbing``.
"""
