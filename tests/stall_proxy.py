"""A TCP proxy in front of PostgreSQL that stalls one client mid-message, for the write-stall
fault test (``tests/e2e/test_write_stall.py``).

Once armed, it passes the client's bytes on until the first chunk holding ``marker`` (a piece
of a statement's text), passes on only a little past the marker, and from then on reads and
drops what that client sends: the backend waits for the rest of the message (``ClientRead``)
inside the client's transaction, and the client waits for an answer, as in issue 19. When the
server ends the session (the watchdog terminated it), the proxy closes the client's side, so
the client sees the connection lost. It fires once; later connections pass through intact.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

_CHUNK = 65_536
_PAST_MARKER = 64


class StallingProxy:
    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self._upstream = upstream  # a unix socket path, or (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self.fired = threading.Event()
        self.fired_at = 0.0
        self.server_closed_at = 0.0  # when the stalled session's server side went away
        self._closing = False
        threading.Thread(target=self._accept, name="stall-proxy", daemon=True).start()

    def arm(self, marker: bytes) -> None:
        self._marker = marker

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self._upstream, str):
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self._upstream)
            return up
        return socket.create_connection(self._upstream)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect_upstream()
            stalled = threading.Event()
            threading.Thread(
                target=self._to_server, args=(client, upstream, stalled), daemon=True
            ).start()
            threading.Thread(
                target=self._to_client, args=(upstream, client, stalled), daemon=True
            ).start()

    def _should_stall(self, seen: bytes) -> int | None:
        """Where to cut ``seen`` if this is the chunk to stall in (once, for one client)."""
        with self._lock:
            if self._marker is None or self.fired.is_set():
                return None
            at = seen.find(self._marker)
            if at < 0:
                return None
            self.fired_at = time.monotonic()
            self.fired.set()
            return at + len(self._marker) + _PAST_MARKER

    def _to_server(
        self, client: socket.socket, upstream: socket.socket, stalled: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(_CHUNK):
                if stalled.is_set():
                    continue  # read and dropped: the client's send completes, the server waits
                cut = self._should_stall(data)
                if cut is not None:
                    upstream.sendall(data[:cut])
                    stalled.set()
                    continue
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _to_client(
        self, upstream: socket.socket, client: socket.socket, stalled: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(_CHUNK):
                client.sendall(data)
        if stalled.is_set():
            self.server_closed_at = time.monotonic()
        for s in (client, upstream):  # shutdown first: it wakes the other pump's recv
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
