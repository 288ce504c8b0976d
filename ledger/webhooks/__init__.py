"""Erasure webhooks: telling recipients and processors that a subject was erased.

The workflow's third step (requested → keys shredded → **processors notified** → completed).
The notifier (``consumers.notifier``) reads ``KeysShredded`` records from the ledger topic and
keeps these rules:

- **Planned once, in PostgreSQL, before the offset moves.** A ``KeysShredded`` record becomes
  one request row and one delivery row per target in one transaction (``outbox``); a record
  seen again changes nothing. Targets are fixed when the request is first planned.
- **Stable delivery ids.** A delivery's id is derived from the tenant, the request and the
  target's name (``notice.delivery_id``): the same on every attempt, after a restart and after
  re-consumption, so receivers deduplicate on the ``webhook-id`` header.
- **Every attempt is recorded** (``webhook_attempts``) before it is made; one interrupted by a
  crash stays recorded without an outcome and counts as an attempt.
- **Nothing personal leaves.** The body names the tenant, the pseudonymous subject id and event
  ids; signing secrets are stored only wrapped by the key-encryption key.
- **The ledger step is recorded once.** When every delivery of a request is settled, the
  notifier records ``ProcessorsNotified`` and ``ErasureCompleted`` and only then marks the
  request done; a crash in between makes it try again, and the ledger answers "already
  recorded".

May import ``ledger.application``, ``ledger.keys``, ``ledger.domain`` and ``ledger.plumbing``.
"""
