"""Deprecated: Apache Kafka's launcher moved to :mod:`ledger.servers.apache`.

``python -m ledger.kafka.apache`` still starts a cluster (with a deprecation warning) so that
scripts written against earlier docs keep working; new ones use
``python -m ledger.servers.apache``. It forwards by module name, so importing this package
never loads the servers.
"""

from __future__ import annotations

import runpy
import warnings

if __name__ == "__main__":
    warnings.warn(
        "python -m ledger.kafka.apache is deprecated; use python -m ledger.servers.apache",
        DeprecationWarning,
        stacklevel=1,
    )
    runpy.run_module("ledger.servers.apache", run_name="__main__", alter_sys=True)
