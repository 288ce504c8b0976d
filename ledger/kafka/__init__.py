"""Kafka: the one place that makes Kafka clients, for the ledger's producers, consumers and tools.

Owns the connection settings every client gets, TLS and SASL included (``connection``,
``security``), the topics and how they are replicated (``topics``), topic administration
(``admin``), the producer and consumer factories (``producer``, ``consumer``, ``librdkafka``)
and the diagnosis of a broker that cannot be reached (``diagnosis``); ``apache`` only forwards
the deprecated ``python -m ledger.kafka.apache`` to the servers. May import
``ledger.plumbing`` only.

kafka-python 3.0 loads its protocol schemas through ``importlib.resources`` calls that are
deprecated since Python 3.11; the import happens here, once, with that warning silenced.

kafka-python 3.0.12 leaves a socket open when a connection attempt fails (a broker that is
down refuses it): ``KafkaNetSocket.sock_connect`` raises without closing the socket it was
given. On a multi-broker cluster with one broker lost, every client's reconnect attempts
would leave sockets for the garbage collector. :func:`_closing_sock_connect` closes the socket
when the attempt fails; ``tests/integration/test_kafka_sockets.py`` shows the leak is gone.
"""

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401
    from kafka.net.inet import KafkaNetSocket

_sock_connect = KafkaNetSocket.sock_connect


async def _closing_sock_connect(self: Any, net: Any, sock: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await _sock_connect(self, net, sock, *args, **kwargs)
    except BaseException:
        sock.close()
        raise


if not getattr(_sock_connect, "_ledger_closes_on_failure", False):
    _closing_sock_connect._ledger_closes_on_failure = True  # type: ignore[attr-defined]
    KafkaNetSocket.sock_connect = _closing_sock_connect
