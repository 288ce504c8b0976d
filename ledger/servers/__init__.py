"""Servers the ledger starts itself, for ``ledger dev``, the benchmarks and the tests.

Owns the embedded PostgreSQL and the Tansu broker (``embedded``) and Apache Kafka run from
its Maven Central jars in KRaft mode, one node or a cluster (``apache``, ``apache_jars``,
``apache_node``). Production never runs these: it points the same code at its own servers.
May import ``ledger.kafka`` and ``ledger.plumbing``.
"""
