"""The one exception type a user ever sees.

Every failure a person can act on (bad checksum, corrupt archive, malformed dictionary, no room on
disk) is raised as :class:`VlprepError` with the file, the record and the fix in its message, so the
command line can print it without a traceback and exit non-zero.
"""
from __future__ import annotations


class VlprepError(Exception):
    """A failure with a message written for the person at the terminal."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  fix: {fix}")


class DamagedFile(VlprepError, ValueError):
    """A file vlprep wrote (an index, ``stats.json``) that no longer parses: named, with the fix.

    Also a ``ValueError``, so code that reads a file it can do without (and catches ValueError)
    goes on as before."""
