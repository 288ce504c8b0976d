"""The envelope every recorded ingest event keeps: a base class for the domain's facts."""

from __future__ import annotations

from datetime import datetime

from eventsourcing.domain import Aggregate


class Fact(Aggregate.Event):
    """An event that arrived from a producer. ``timestamp`` (inherited) is when the ledger
    recorded it; ``occurred_at`` is when it happened upstream."""

    event_id: str
    occurred_at: datetime
    producer: str
    tenant: str
