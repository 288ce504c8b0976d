"""The wire: what travels on Kafka, and the contract producers keep.

Owns Avro single-object encoding, the one module that imports fastavro (``avro``), and the
contract (``contract``): decoding and validating an ingest message into a command, opening the
fields a producer sealed, and the ciphertext-only record the ledger topic carries. May import
``ledger.keys``, ``ledger.domain``, the ``schemas`` package and ``ledger.plumbing``.
"""
