"""Auditor replays: the projections rebuilt as they stood at any instant, in scratch schemas,
answering the same queries as the live ones (``docs/audit.md``, "Replay")."""
