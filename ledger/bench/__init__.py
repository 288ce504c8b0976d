"""Benchmarks behind ``ledger bench``: figures printed beside a baseline from the same run."""
