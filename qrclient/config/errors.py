"""The configuration's one error type, kept import-light for the command line."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration file that cannot be used: one line naming file, line and field."""
