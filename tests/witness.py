"""A tlog-witness (c2sp.org/tlog-witness) over real HTTP, for tests: it keeps the latest tree
size it cosigned per origin, checks the log's signature and the consistency proof, and answers
with a timestamped Ed25519 cosignature — or 403, 409 (with its size), 422, as the spec says."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.integrity.notes import (
    COSIGNATURE,
    Note,
    NoteError,
    TreeHead,
    VerifierKey,
    cosign,
    verify_checkpoint,
)
from ledger.storage import merkle


class HttpWitness:
    def __init__(self, name: str, log_key: VerifierKey) -> None:
        self.name, self.log_key = name, log_key
        self.private = Ed25519PrivateKey.generate().private_bytes_raw()
        public = Ed25519PrivateKey.from_private_bytes(self.private).public_key()
        self.vkey = VerifierKey(name, COSIGNATURE, public.public_bytes_raw())
        self.state: dict[str, tuple[int, bytes]] = {}  # origin -> (size, root)
        self.lock = threading.Lock()
        self.seen: list[int] = []  # the status of every answer
        self.url = ""

    def add_checkpoint(self, body: str) -> tuple[int, str, str]:
        """(status, content type, body) for one add-checkpoint request."""
        head_lines, _, rest = body.partition("\n\n")
        lines = head_lines.split("\n")
        if not lines[0].startswith("old "):
            return 400, "text/plain", "no old size line\n"
        old = int(lines[0][4:])
        proof = [base64.b64decode(x) for x in lines[1:]]
        try:
            verdict = verify_checkpoint(rest, [self.log_key])
        except NoteError as exc:
            return 403, "text/plain", f"{exc}\n"
        head: TreeHead = verdict.head
        with self.lock:
            size, root = self.state.get(head.origin, (0, merkle.EMPTY_ROOT))
            if old > head.size:
                return 400, "text/plain", "old size is larger than the checkpoint\n"
            if old != size:
                return 409, "text/x.tlog.size", f"{size}\n"
            if not merkle.verify_consistency(old, head.size, root, head.root, proof):
                return 422, "text/plain", "the consistency proof does not verify\n"
            self.state[head.origin] = (head.size, head.root)
        signature = cosign(self.private, self.name, Note.parse(rest), int(time.time()))
        return 200, "text/plain", signature.line


@contextmanager
def serving(witness: HttpWitness) -> Iterator[HttpWitness]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            if self.path != "/add-checkpoint":
                status, kind, text = 404, "text/plain", "not found\n"
            else:
                status, kind, text = witness.add_checkpoint(body)
            witness.seen.append(status)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    witness.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield witness
    finally:
        server.shutdown()
        server.server_close()
