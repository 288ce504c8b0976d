"""Erasure after a restore: the ledger topic as the journal of every erasure, re-applied.

Owns the reader of the ``KeysShredded`` records on the ledger topic (``journal``) and the
reconciliation that makes them true in a database restored from a backup before anything is
served (``reconcile``). May import ``ledger.process``, ``ledger.webhooks``, ``ledger.kafka``
and every layer below ``ledger.application``, which it may import too.
"""
