"""Consent over time: per tenant, purpose and day, how many consents were given and how many
withdrawn, counted as changes of state, in the consent view's schema.

Table ``consent_days``: ``granted`` counts grants to a subject whose consent to the purpose
did not stand granted (a first grant, or a grant after a withdrawal); ``withdrawn`` counts
withdrawals of a consent that stood granted. A repeated grant and a withdrawal of a consent
never granted or already withdrawn change nothing, so the running sum of ``granted -
withdrawn`` up to a day is the number of subjects whose consent stood granted at its end. The
day is the UTC date the change happened upstream (``occurred_at``).

Rules this module keeps:

* **No statement of its own.** The consent fold tallies the batch's changes in memory
  (:class:`DayTally`) and writes them with one ``unnest`` upsert that is the main query of
  the consents' own upsert statement (which runs in a ``WITH``), in the batch's transaction:
  nothing per event, no extra round trip.
* **Part of the view's DDL**, so a rebuild fills it from the first event like every other
  table of the view. A view created before this table existed has it empty for the events
  it had already applied: rebuild the consent view to fill it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.consent_days (
    tenant text NOT NULL,
    purpose text NOT NULL,
    day date NOT NULL,
    granted integer NOT NULL DEFAULT 0,
    withdrawn integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, purpose, day)
)"""
UPSERT = (
    "INSERT INTO {schema}.consent_days (tenant, purpose, day, granted, withdrawn) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::date[], %b::int[], %b::int[]) "
    "ON CONFLICT (tenant, purpose, day) DO UPDATE SET "
    "granted = {schema}.consent_days.granted + EXCLUDED.granted, "
    "withdrawn = {schema}.consent_days.withdrawn + EXCLUDED.withdrawn"
)


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date() if at.tzinfo else at.date()


class DayTally:
    """A batch's changes of consent state, by (tenant, purpose, day)."""

    def __init__(self) -> None:
        self.granted: Counter[tuple[str, str, date]] = Counter()
        self.withdrawn: Counter[tuple[str, str, date]] = Counter()

    def grant(self, tenant: str, purpose: str, at: datetime) -> None:
        self.granted[(tenant, purpose, utc_day(at))] += 1

    def withdraw(self, tenant: str, purpose: str, at: datetime) -> None:
        self.withdrawn[(tenant, purpose, utc_day(at))] += 1

    def arrays(self) -> list[list[Any]]:
        """The parameters of :data:`UPSERT`: one array per column, keys in order (so that
        concurrent writers lock rows in one order); empty arrays insert nothing."""
        keys = sorted(set(self.granted) | set(self.withdrawn))
        return [
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [self.granted[k] for k in keys],
            [self.withdrawn[k] for k in keys],
        ]
