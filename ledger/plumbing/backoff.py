"""How every long-running loop waits after a failure (the database or the broker away).

Consecutive failures wait 0.4 s, 0.8 s, 1.6 s, … up to 5 s; a success starts again from the
shortest wait. Callers wait on their stop event, so a stop ends the wait at once.
"""

from __future__ import annotations

MAX_S = 5.0


class Backoff:
    def __init__(self) -> None:
        self.failures = 0

    def failed(self) -> float:
        """Counts a failure; returns how long to wait before trying again."""
        self.failures += 1
        return min(MAX_S, 0.2 * 2**self.failures)

    def succeeded(self) -> None:
        self.failures = 0
