"""Exceptions that reach the operator as one line: where, what was expected, what was found.

Each subclasses the matching builtin so callers can catch either. The command line prints
``shotwatch: error: <message>`` and exits 2 for :class:`UsageError` and its subclasses, 1 for
:class:`ShotwatchRuntimeError`.
"""

from __future__ import annotations

__all__ = ["ConfigError", "RecordingError", "ShotwatchRuntimeError", "SourceError", "UsageError"]


class UsageError(ValueError):
    """Bad usage, configuration or input (exit code 2)."""


class ConfigError(UsageError):
    """A configuration file or key is wrong: names the file and dotted key."""


class RecordingError(UsageError):
    """A recording is unreadable or not what was expected: names the recording and array."""


class SourceError(UsageError):
    """A source cannot start as configured (unknown detector, missing facility API)."""


class ShotwatchRuntimeError(RuntimeError):
    """A failure at run time (exit code 1)."""
