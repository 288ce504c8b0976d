"""Benchmarks behind ``ledger bench``: figures printed beside a baseline from the same run.

Owns the setup of a benchmark's own servers and ledger (``setup``), load generation
(``load``) and one module per figure (``ingest``, ``query``, ``freshness``, ``replay``,
``proofs``, ``soak``). May import every layer below it.
"""
