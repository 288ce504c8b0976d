"""The application: validated commands become recorded events, a batch per transaction.

Owns the ``Ledger`` application and its read-only sibling ``LedgerReader`` (``service``),
and the batch a call to ``Ledger.record`` works through (``batch``): idempotency receipts,
refusals as outcomes, the subjects a batch creates and shreds. May import ``ledger.wire``,
``ledger.keys``, ``ledger.storage``, ``ledger.domain`` and ``ledger.plumbing``; never a
process, Kafka or the read side.
"""
