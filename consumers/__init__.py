"""Kafka processes: ingest (Kafka → ledger), relay (ledger → Kafka), notifier (ledger topic
→ erasure webhooks).

Thin entry points: each polls a batch, calls the application once for it and commits offsets
only after what it did is committed. May import ``ledger.application``, ``ledger.process``,
``ledger.integrity``, ``ledger.webhooks``, ``ledger.kafka``, ``ledger.wire``,
``ledger.keys``, ``ledger.storage``, ``ledger.domain`` and ``ledger.plumbing``.
"""
