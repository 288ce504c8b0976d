"""Storage: the event store the ledger application records into.

Owns the store's interface (``store``) and its two implementations, in memory (``memory``,
for unit tests) and in PostgreSQL (``postgres``); the hash chain every stored event is linked
into as it is written (``chain``, the one definition; ``chain_postgres`` writes links in the
same transaction); how values are stored (``transcodings``); PostgreSQL session settings
(``pg_session``) and the watch that bounds a write transaction (``write_watch``). May import
``ledger.domain`` and ``ledger.plumbing`` only.
"""
