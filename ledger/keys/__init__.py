"""Keys: everything that encrypts, wraps or shreds.

Owns AES-256-GCM and the per-subject data keys (``crypto``, the one module that encrypts),
the key-encryption keys that wrap them and their ring (``kek``), the subject key store whose
deletion is erasure (``keystore``), producer-side sealing of personal fields (``crypto_ingest``)
and the ingest key pairs that open it (``ingest_keys``, ``ingest_keys_postgres``), and the
online re-wrap of every secret under a new KEK (``rotation``). May import ``ledger.storage``,
``ledger.domain`` and ``ledger.plumbing``.
"""
