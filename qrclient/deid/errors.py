"""The one failure of pseudonymisation's setup: bad input, said in one line with a hint."""

from __future__ import annotations


class DeidError(Exception):
    """A key, linkage file, option or store that pseudonymisation cannot work with.

    Raised before anything is fetched; the command line reports it and exits 2.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message
