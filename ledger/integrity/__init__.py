"""Tamper evidence: the hash chain over recorded events, signed checkpoints, verification."""
