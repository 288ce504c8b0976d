"""Stand-ins for Kafka client objects in unit tests (no I/O)."""

from __future__ import annotations


class FakeFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error
