"""The wire contract: Avro schemas (``*.avsc``), one file per named type.

Files are named ``<namespace>.<Name>.avsc`` so that ``fastavro.schema.load_schema`` resolves
named types (``compliance.Envelope``, ``compliance.Sealed``...) from their own files. May
import nothing of ours.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
