"""When a failed delivery is tried again: exponential backoff with jitter, then give up.

After failed attempt ``n`` (1-based) the next one waits ``d = min(max_delay, base · 2^(n-1))``
scaled by a random factor in [0.5, 1] ("equal jitter": the wait still grows, and receivers
that come back at once are not hit by every sender in the same second). Attempt
``max_attempts`` is the last; a delivery that fails it is ``failed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 16
    base: timedelta = timedelta(seconds=2)
    max_delay: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base <= timedelta(0) or self.max_delay < self.base:
            raise ValueError("need 0 < base <= max_delay")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> timedelta:
        """How long to wait after failed attempt ``attempt`` before the next one."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        ceiling = self.max_delay.total_seconds()
        full = min(ceiling, self.base.total_seconds() * 2.0 ** min(attempt - 1, 62))
        return timedelta(seconds=full * (0.5 + 0.5 * rand()))

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def longest_schedule(self) -> timedelta:
        """From the first attempt to the last, without jitter (the most it can take)."""
        total = sum(
            (self.delay(n, rand=lambda: 1.0) for n in range(1, self.max_attempts)),
            timedelta(0),
        )
        return total
