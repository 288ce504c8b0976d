"""The read side: read models built from the ledger's notification log, and the API over them.

Owns the views (consent state, the one-year disclosure log, erasures) and their catalogue, the
runners that keep them exactly once, their rebuild, auditors' replays as of an instant
(``replay``), subject reports (``reports``) and the HTTP query API (``api``). May import
``ledger.application``, ``ledger.process``, ``ledger.integrity``, ``ledger.wire``,
``ledger.keys``, ``ledger.storage``, ``ledger.domain`` and ``ledger.plumbing``.
"""
