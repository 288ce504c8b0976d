"""The error a wrong setting raises, in whichever layer reads it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message says which and why."""
