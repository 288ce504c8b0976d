"""What every Kafka client the ledger makes is given: the servers and the security settings.

The one place that configures a connection: :func:`~ledger.kafka.producer.make_producer`,
:func:`~ledger.kafka.consumer.make_consumer` and :func:`~ledger.kafka.admin.admin_client`
all start from :func:`connection_config`, so a TLS or SASL setting reaches every client —
the processes', the CLI's, the benchmarks' and the producer client's alike.

Without an explicit :class:`~ledger.kafka.security.KafkaSecurity` the ``LEDGER_KAFKA_*``
variables of the process environment apply (the same ones ``ledger.process.settings.load`` checks
at start). They are read each time a client is made, so a rotated password file is picked up
by the next client. A client that cannot connect is explained in one line by
:func:`ledger.kafka.diagnosis.explain`.
"""

from __future__ import annotations

import os
from typing import Any

from ledger.kafka import diagnosis
from ledger.kafka.security import KafkaSecurity, from_environment

__all__ = ["KafkaSecurity", "connection_config"]


def connection_config(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """kafka-python keyword arguments: ``bootstrap_servers`` and the security settings."""
    chosen = security if security is not None else from_environment(os.environ)
    diagnosis.install()  # so a refused login or certificate can be named (``diagnosis``)
    return {"bootstrap_servers": bootstrap.split(","), **chosen.client_config()}
