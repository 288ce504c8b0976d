"""Kafka plumbing shared by the ledger's producers, consumers and tools.

kafka-python 3.0 loads its protocol schemas through ``importlib.resources`` calls that are
deprecated since Python 3.11; the import happens here, once, with that warning silenced.
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401
