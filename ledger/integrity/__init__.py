"""Tamper evidence: verifying the hash chain, signed checkpoints, audits.

Owns the verification of a chain of stored events (``verify``; the one definition of a link is
``ledger.storage.chain``), what a verification reads from the store (``sources``), signed
checkpoints (``checkpoints``), their table and the process step that writes and publishes
them (``checkpoint_store``, ``checkpointer``), the audit of a checkpoint (``audit``) and of
the ledger topic against the chain (``topic``). May import ``ledger.application``,
``ledger.wire``, ``ledger.storage``, ``ledger.kafka`` and ``ledger.plumbing``.
"""
