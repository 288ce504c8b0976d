"""The hash chain over recorded events: the one definition of how a link is computed.

Rules this module keeps (``docs/audit.md`` states the same format for outside verifiers):

- **Over the stored form.** A link covers an event's stored columns exactly as the event
  table holds them: ``notification_id``, ``originator_id``, ``originator_version``, ``topic``
  and ``state`` (the stored bytes, whose personal fields are ciphertext). Shredding deletes
  keys, never event rows, so the chain still verifies after an erasure.
- **In ledger order.** Links follow notification ids, the ledger's total order. Ids may have
  gaps (rolled-back transactions consume sequence values); a link names the id of the event
  before it (``previous``), so a gap is never mistaken for a deleted event.
- **Unambiguous encoding.** Every field is fixed-width or length-prefixed, big-endian::

      entry  = "ledger-chain-v1" ‖ u64(sequence) ‖ u64(previous)
               ‖ str(originator_id) ‖ u64(originator_version) ‖ str(topic) ‖ bytes(state)
      str(x) = bytes(UTF-8 of x);  bytes(b) = u32(len(b)) ‖ b
      hash_n = SHA-256(hash_previous ‖ entry_n),  hash_0 = 32 zero bytes (genesis)

  ``originator_id`` is the UUID in its canonical lower-case 36-character form.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

GENESIS = bytes(32)
DOMAIN = b"ledger-chain-v1"
_U32 = struct.Struct(">I")
_SEQUENCES_AND_ID_LENGTH = struct.Struct(">QQI")  # u64(sequence) u64(previous) u32(len(id))
_VERSION_AND_TOPIC_LENGTH = struct.Struct(">QI")  # u64(originator_version) u32(len(topic))


@dataclass(frozen=True)
class Stored:
    """One event's stored columns, as the event table holds them."""

    sequence: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class Link(NamedTuple):
    """The chain row of the event at ``sequence``: its predecessor's id and its own hash (a
    tuple, not a dataclass: verification reads one per event, and a tuple is built in a
    third of the time)."""

    sequence: int
    previous: int
    hash: bytes


# One event's stored columns as a bare tuple, as verification reads them: sequence, originator
# id (canonical text), originator version, topic, state.
Row = tuple[int, str, int, str, bytes]


def entry(event: Stored, previous: int) -> bytes:
    """The exact bytes one link hashes after its predecessor's hash."""
    return _entry(
        event.sequence,
        previous,
        str(event.originator_id),
        event.originator_version,
        event.topic,
        event.state,
    )


def _entry(
    sequence: int, previous: int, originator: str, version: int, topic: str, state: bytes
) -> bytes:
    """Packed in three calls rather than six: verification runs this once per event."""
    originator_bytes = originator.encode()
    topic_bytes = topic.encode()
    return b"".join(
        (
            DOMAIN,
            _SEQUENCES_AND_ID_LENGTH.pack(sequence, previous, len(originator_bytes)),
            originator_bytes,
            _VERSION_AND_TOPIC_LENGTH.pack(version, len(topic_bytes)),
            topic_bytes,
            _U32.pack(len(state)),
            state,
        )
    )


def link_hash(previous_hash: bytes, event: Stored, previous: int) -> bytes:
    return hashlib.sha256(previous_hash + entry(event, previous)).digest()


def row_hash(previous_hash: bytes, row: Row, previous: int) -> bytes:
    """:func:`link_hash` of an event read as a :data:`Row`."""
    sequence, originator, version, topic, state = row
    return hashlib.sha256(
        previous_hash + _entry(sequence, previous, originator, version, topic, state)
    ).digest()


def extend(head: Link | None, events: Iterable[Stored]) -> list[Link]:
    """Links for ``events`` (in any order; chained in id order) after ``head``, the last link
    so far (None for an empty chain). Every id must be greater than the head's."""
    previous, previous_hash = (head.sequence, head.hash) if head else (0, GENESIS)
    links = []
    for event in sorted(events, key=lambda e: e.sequence):
        if event.sequence <= previous:
            raise ValueError(f"event {event.sequence} is not after the chain head {previous}")
        digest = link_hash(previous_hash, event, previous)
        links.append(Link(event.sequence, previous, digest))
        previous, previous_hash = event.sequence, digest
    return links


def stored(
    sequence: int, originator_id: UUID | str, originator_version: int, topic: str, state: bytes
) -> Stored:
    """A :class:`Stored` with the id normalised to a UUID (stores hand back either)."""
    ident = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    return Stored(sequence, ident, originator_version, topic, bytes(state))
