"""Why a Kafka client could not connect, in one line an operator can act on.

kafka-python reports a refused SASL login or an untrusted broker certificate only in its own
log records; the exception that reaches the caller says ``Unable to bootstrap``. The handler
installed here (by :func:`~ledger.kafka.connection.connection_config`, so before any client
connects) remembers the last such telling failure, and :func:`explain` names it.

Rules this module keeps:

- **One line, no secrets.** The explanation names the variables to check and the broker's or
  the TLS library's reason; never a password, never a personal value.
- **Only recent failures count.** A failure older than :data:`RECENT_S` does not explain a
  new error.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka.errors import SaslAuthenticationFailedError

RECENT_S = 120.0
_CERTIFICATE = "CERTIFICATE_VERIFY_FAILED"
_HANDSHAKE = "Handshake failed"


class _Recorder(logging.Handler):
    """Keeps the last refused login or failed TLS handshake kafka-python logged."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.last: tuple[float, BaseException] | None = None
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException) and _telling(arg):
                with self.guard:
                    self.last = (time.monotonic(), arg)

    def recent(self) -> BaseException | None:
        with self.guard:
            if self.last is None or time.monotonic() - self.last[0] > RECENT_S:
                return None
            return self.last[1]

    def forget(self) -> None:
        with self.guard:
            self.last = None


_RECORDER = _Recorder()


def install() -> None:
    """Listens to kafka-python's log records (idempotent; adds no output)."""
    kafka_log = logging.getLogger("kafka")
    if _RECORDER not in kafka_log.handlers:
        kafka_log.addHandler(_RECORDER)


def forget() -> None:
    """Drops the remembered failure (after a connection succeeded)."""
    _RECORDER.forget()


def explain(exc: BaseException) -> str:
    """One line: what went wrong connecting to Kafka, and what to check."""
    cause = _RECORDER.recent()
    if isinstance(cause, SaslAuthenticationFailedError):
        return (
            "the broker refused the SASL login (check LEDGER_KAFKA_SASL_USERNAME, "
            f"LEDGER_KAFKA_SASL_PASSWORD and LEDGER_KAFKA_SASL_MECHANISM): {_reason(cause)}"
        )
    if cause is not None and _CERTIFICATE in str(cause):
        return (
            "the broker's TLS certificate is not trusted (check LEDGER_KAFKA_SSL_CAFILE and "
            f"LEDGER_KAFKA_SSL_CHECK_HOSTNAME): {_reason(cause)}"
        )
    if cause is not None:
        return f"the TLS handshake with the broker failed: {_reason(cause)}"
    text, name = str(exc), type(exc).__name__
    return _first_line(text if text.startswith(name) else f"{name}: {text}")


def _telling(exc: BaseException) -> bool:
    return isinstance(exc, SaslAuthenticationFailedError) or _HANDSHAKE in str(exc)


def _reason(exc: BaseException) -> str:
    """The broker's or TLS library's words, without kafka-python's repeated prefixes."""
    text = _first_line(str(exc))
    for marker in ("certificate verify failed", "Authentication failed", _HANDSHAKE):
        at = text.find(marker)
        if at >= 0:
            return text[at:]
    return text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
