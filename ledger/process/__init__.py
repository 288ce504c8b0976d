"""What a ledger process is made of: its settings, and the ledger opened from them.

Owns the one reading of the environment into :class:`~ledger.process.settings.Settings`
(``settings``, with the KEK, Kafka security and session variables their own packages parse)
and the one place that wires keys to storage to open a ``Ledger`` or ``LedgerReader`` from
those settings (``runtime``). May import ``ledger.application`` and every layer below it.
"""
