"""The topics the ledger reads and writes, and how the topics it creates are replicated."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.plumbing.errors import ConfigError


@dataclass(frozen=True)
class Topics:
    ingest: str = "compliance.ingest"
    rejected: str = "compliance.ingest.rejected"
    ledger: str = "compliance.ledger"
    checkpoints: str = "compliance.checkpoints"


@dataclass(frozen=True)
class TopicReplication:
    """How the topics the ledger creates are replicated (``LEDGER_KAFKA_REPLICATION_FACTOR``,
    ``LEDGER_KAFKA_MIN_INSYNC_REPLICAS``); None means derived from the cluster's size."""

    factor: int | None = None
    min_insync: int | None = None

    def resolve(self, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) on a cluster of ``brokers`` brokers:
        by default ``min(3, brokers)`` replicas, of which 2 must acknowledge a write where
        there are 3 or more, else 1."""
        factor = self.factor or min(3, max(1, brokers))
        min_insync = self.min_insync or (2 if factor >= 3 else 1)
        if min_insync > factor:
            raise ConfigError(
                f"LEDGER_KAFKA_MIN_INSYNC_REPLICAS={min_insync} exceeds the replication factor "
                f"{factor}: no write could ever be acknowledged"
            )
        return factor, min_insync
