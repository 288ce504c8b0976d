"""A stop signal during a webhook delivery: the delivery in hand finishes and is recorded."""

from __future__ import annotations

import threading

import psycopg

from consumers.notifier import Notifier
from ledger.application.service import Ledger
from ledger.process.settings import Settings
from ledger.webhooks import listing
from tests import builders as b
from tests.integration.test_notifier import (
    cli,
    erase_a_subject_with_disclosures,
    ledger,
    notifier,
    relay_everything,
)
from tests.webhook_receivers import Receivers, receivers

__all__ = ["ledger", "notifier", "receivers"]  # fixtures


def test_stopping_during_a_delivery_finishes_and_records_it(
    ledger: Ledger,
    settings: Settings,
    settings_environ: dict[str, str],
    receivers: tuple[Receivers, str],
    notifier: tuple[Notifier, Ledger],
) -> None:
    inbox, base = receivers
    for name, path in [("mailer-inc", "mailer"), ("old-bank", "bank")]:
        printed = cli(settings_environ, "webhooks", "add", b.TENANT, name, f"{base}/{path}")
        inbox.secrets[path] = printed.strip()
    erase_a_subject_with_disclosures(ledger)
    relay_everything(ledger, settings)

    stop = threading.Event()
    answer = inbox.handle

    def signal_arrives_meanwhile(path: str, headers: dict[str, str], body: bytes) -> int:
        stop.set()  # what SIGTERM does, while the receiver has the request in hand
        return answer(path, headers, body)

    inbox.handle = signal_arrives_meanwhile  # type: ignore[method-assign]
    process, _ = notifier
    running = threading.Thread(target=process.run, args=(stop,))
    running.start()
    running.join(timeout=30)
    assert not running.is_alive()

    assert len(inbox.received) == 1  # the delivery in hand, and no other after the stop
    delivery_id = inbox.received[0].headers["webhook-id"]
    with psycopg.connect(settings.require_database()) as conn:
        rows = listing.deliveries(conn, settings.database_schema, tenant=b.TENANT)
    done = {str(r.delivery_id): (r.status, r.attempts) for r in rows}
    assert done[delivery_id] == ("delivered", 1)
    assert [r.status for r in rows].count("pending") == 1  # the other one, for the next run
