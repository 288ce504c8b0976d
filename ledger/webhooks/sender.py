"""Sending one webhook attempt over HTTP: the one module that talks HTTP to receivers.

One POST, no retries and no redirects inside it (the outbox schedules retries, and a
redirect would carry a signed notice somewhere nobody registered), bounded by a timeout.
The outcome is a status code, or the class of the error that prevented one (a timeout, a
refused connection, a TLS failure...); error messages are not kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import urllib3

from ledger.webhooks.outbox import Result

USER_AGENT = "compliance-ledger-notifier/1"


class Sender:
    def __init__(self, timeout_s: float) -> None:
        self.timeout = urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s)
        self._http = urllib3.PoolManager(retries=False, timeout=self.timeout, maxsize=4)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Result:
        started = time.perf_counter()
        try:
            response = self._http.request(
                "POST",
                url,
                body=body,
                headers={
                    "content-type": "application/json",
                    "user-agent": USER_AGENT,
                    **headers,
                },
                redirect=False,
                preload_content=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return Result(None, _error_name(exc), _ms_since(started))
        try:
            return Result(response.status, None, _ms_since(started))
        finally:
            response.close()  # the answer's body is not needed

    def close(self) -> None:
        self._http.clear()


def _error_name(exc: BaseException) -> str:
    # A timeout while connecting is reported by urllib3 wrapped; name the cause.
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return f"{type(exc).__name__}:{type(reason).__name__}"
    return type(exc).__name__


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
