"""The delivery loop: due deliveries → signed POSTs → outcomes; settled requests → the ledger.

Rules this loop keeps (with ``outbox``):

- **Sign each attempt afresh** (Standard Webhooks headers, the endpoint's secret unwrapped
  for that attempt only); the body and ``webhook-id`` never change between attempts.
- **2xx is delivered; anything else is retried** — other status codes, timeouts, refused
  connections, TLS errors — with backoff (``retry.RetryPolicy``) until the last attempt.
- **The ledger hears once.** When a request's deliveries are all settled, the loop records
  ``ProcessorsNotified`` + ``ErasureCompleted`` (``Ledger.record_notification``) and then marks
  the request; after a crash between the two the ledger answers "already recorded" and the
  request is marked. A refusal by the ledger (a rule violation) is logged as an error and
  tried again later, never dropped.
- **The loop keeps running.** A database or other failure is logged (error class only) and
  the loop backs off and carries on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ledger.application.service import Ledger
from ledger.domain.rules import RuleViolation
from ledger.keys.crypto import CannotOpen, KeyEncryptionKey
from ledger.plumbing.backoff import Backoff
from ledger.plumbing.logs import get as get_logger
from ledger.webhooks import notice
from ledger.webhooks.endpoints import open_secret
from ledger.webhooks.outbox import Claim, Outbox, ReadyRequest, Result
from ledger.webhooks.sender import Sender
from ledger.webhooks.signing import signed_headers

REFUSED_RETRY = timedelta(minutes=5)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        outbox: Outbox,
        kek: KeyEncryptionKey,
        sender: Sender,
        *,
        idle_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ledger = ledger
        self.outbox = outbox
        self.kek = kek
        self.sender = sender
        self.idle_s = idle_s
        self.clock = clock
        self.log = get_logger("notifier")
        self._wake = threading.Event()

    def wake(self) -> None:
        """Look for work now (new deliveries were planned, or the process is stopping)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                busy = self.step()
                backoff.succeeded()
            except Exception as exc:
                wait = backoff.failed()
                self.log.warning("dispatch_will_retry", error=type(exc).__name__, backoff_s=wait)
                stop.wait(wait)
                continue
            if not busy:
                self._wake.wait(self.idle_s)
                self._wake.clear()

    def step(self) -> bool:
        """Finalizes one settled request and makes one delivery attempt; False if idle."""
        finalized = self.finalize_one()
        delivered = self.deliver_one()
        return finalized or delivered

    def deliver_one(self) -> bool:
        claim = self.outbox.claim(self.clock())
        if claim is None:
            return False
        if claim.settled is not None:
            self.log.warning(
                "delivery_settled_unsent",
                delivery_id=str(claim.delivery_id),
                tenant=claim.tenant,
                recipient=claim.recipient,
                status=claim.settled,
            )
            return True
        result = self.attempt(claim)
        status = self.outbox.finish(claim, result, self.clock())
        self.log.info(
            "delivery_attempted",
            delivery_id=str(claim.delivery_id),
            tenant=claim.tenant,
            recipient=claim.recipient,
            attempt=claim.attempt,
            status_code=result.status_code,
            error=result.error,
            ms=result.duration_ms,
            status=status,
        )
        return True

    def attempt(self, claim: Claim) -> Result:
        assert claim.url and claim.wrapped_secret and claim.kek_id
        try:
            secret = open_secret(
                self.kek, claim.tenant, claim.recipient, claim.wrapped_secret, claim.kek_id
            )
        except CannotOpen:  # its KEK is no longer configured: an operator must re-add it
            return Result(None, "SecretUnavailable", 0)
        headers = signed_headers(secret, str(claim.delivery_id), claim.body, self.clock())
        return self.sender.post(claim.url, claim.body.encode(), headers)

    def finalize_one(self) -> bool:
        now = self.clock()
        ready = self.outbox.finalize_next(now, self._record, retry_at=now + REFUSED_RETRY)
        return ready is not None

    def _record(self, ready: ReadyRequest) -> bool:
        context = {
            "tenant": ready.tenant,
            "subject_id": str(ready.subject_id),
            "request_event_id": ready.request_event_id,
        }
        if ready.notice_type != notice.EVENT_TYPE:  # a change notice: no ledger step after it
            statuses = sorted(str(d["status"]) for d in ready.deliveries)
            self.log.info(
                "change_notice_settled",
                notice_type=ready.notice_type,
                deliveries=len(statuses),
                statuses=statuses,
                **context,
            )
            return True
        try:
            fresh = self.ledger.record_notification(
                ready.subject_id, ready.deliveries, ready.settled_at
            )
        except RuleViolation as exc:
            self.log.error("notification_refused_by_ledger", reason=exc.code, **context)
            return False
        statuses = sorted(str(d["status"]) for d in ready.deliveries)
        event = "erasure_completed" if fresh else "erasure_already_completed"
        self.log.info(event, deliveries=len(statuses), statuses=statuses, **context)
        return True
