"""One exception family for everything that turns a user file or a user setting into data.

The CLI prints a :class:`PosekitError` as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""
from __future__ import annotations

from os import PathLike
from typing import Optional, Union


class PosekitError(Exception):
    """A user-facing error: names the file (when there is one) and the problem in one line."""

    def __init__(self, message: str, path: Optional[Union[str, PathLike]] = None):
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DataError(PosekitError):
    """An unreadable image, a malformed annotation file, a `.mat` of the wrong layout."""


class CheckpointError(PosekitError):
    """A weights file that cannot be read or does not fit the model."""


class ConfigError(PosekitError):
    """An unknown key, a wrong type or an impossible value in a config or a ``--set`` override."""
