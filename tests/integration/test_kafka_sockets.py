"""A failed connection attempt leaves no socket open (``ledger.kafka`` patches kafka-python
3.0.12, which leaks one per refused attempt: a broker that died)."""

from __future__ import annotations

import gc
import warnings

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.inet import create_connection

import ledger.kafka  # noqa: F401  (applies the patch)
from ledger.servers.embedded import free_port


class _Net:
    async def wait_write(self, sock: object, timeout_at: float | None = None) -> None:
        return None


def _run(coro: object) -> None:
    try:
        while True:
            coro.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return


def test_a_refused_connection_leaves_no_socket_open() -> None:
    port = free_port()  # nothing listens there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(KafkaConnectionError):
            _run(create_connection(_Net(), "127.0.0.1", port))
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
