"""The domain: the facts the ledger records and the rules they obey, with no I/O.

Owns the values every layer shares (tenant and purpose codes, legal bases, sealed values), the
rules and the named refusals they raise (``rules``), the facts a command carries (``facts``)
and the ``Tenant`` and ``Subject`` aggregates (``tenant``, ``subject``). Their event classes
never move: a stored event names its class by module path. May import nothing of ours.
"""
