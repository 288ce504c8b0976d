"""Webhook signatures: the Standard Webhooks scheme, through its reference library.

Headers of every request::

    webhook-id:        the delivery id (stable across retries: the receiver's idempotency key)
    webhook-timestamp: seconds since the epoch when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>

The secret is 32 random bytes, shown to operators once as ``whsec_<base64>``: the form the
``standardwebhooks`` libraries (Python, JavaScript, Go, Java, Ruby, PHP...) accept, so a
receiver verifies with ``Webhook(secret).verify(body, headers)``. This is the one module that
imports that library.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (a marker, not a secret)
SECRET_BYTES = 32


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def secret_text(secret: bytes) -> str:
    """The secret as operators and receivers see it: ``whsec_`` and standard base64."""
    return SECRET_PREFIX + base64.b64encode(secret).decode("ascii")


def signed_headers(secret: bytes, delivery_id: str, body: str, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt, signed at ``at`` (whole seconds)."""
    # The library reads the datetime's wall clock as UTC, so give it UTC, truncated to the
    # second the timestamp header carries.
    at = at.astimezone(UTC).replace(microsecond=0)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, at, body),
    }
