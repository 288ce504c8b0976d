"""The compliance ledger, in the order an event flows through it.

- ``wire`` — what travels on Kafka: Avro single-object encoding and the producer contract.
- ``domain`` — the facts and their rules: the tenant and subject aggregates, no I/O.
- ``keys`` — everything that encrypts, wraps or shreds: data keys, KEKs, ingest keys.
- ``storage`` — the event store, the hash chain its rows are linked into, transcodings.
- ``application`` — the ``Ledger``: a batch of commands recorded in one transaction.
- ``integrity`` — verification, signed checkpoints, the audit of the ledger topic.
- ``webhooks`` — erasure notices to processors, planned and delivered from an outbox.
- ``erasure`` — the ledger topic as the journal of erasures, re-applied after a restore.
- ``kafka`` — the one place that makes Kafka clients, with their security and topics.
- ``process`` — settings from the environment, and the ledger opened from them.
- ``servers`` — the PostgreSQL and brokers the ledger starts itself for development.
- ``plumbing`` — logs, retries, secret files, child processes; nothing ledger-specific.
- ``client`` — the producer client other teams import; ``cli`` the ``ledger`` command;
  ``bench`` the benchmarks behind ``ledger bench``.

Outside this package: ``schemas/`` (the Avro contract), ``consumers/`` (the Kafka processes:
ingest, relay, notifier) and ``projections/`` (the read models and the query API).

Layers, top to bottom: a package imports only packages in layers below its own, and the
packages sharing a layer do not import each other (``tests/unit/test_layers.py`` reads this
table and holds the code to it):

    ledger.cli
    ledger.bench
    consumers | projections | ledger.client
    ledger.erasure
    ledger.process | ledger.integrity | ledger.webhooks | ledger.servers
    ledger.application
    ledger.wire
    ledger.keys
    ledger.storage | ledger.kafka
    ledger.domain | ledger.plumbing | schemas
"""
