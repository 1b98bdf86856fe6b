"""The exception tree for user mistakes: the CLI turns each into one ``error:`` line and exit 2."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "DeviceError", "EntryPointError", "HPSearchError",
           "TaskError"]


class HPSearchError(Exception):
    """Root of every error caused by the user's input rather than by a bug."""


class ConfigError(HPSearchError):
    """A configuration field has a value it cannot take; the message names both."""


class DataError(HPSearchError):
    """A dataset cannot be found, read or trusted (missing files, keys, NaN values)."""


class DeviceError(HPSearchError):
    """The requested device is unknown or not available on this machine."""


class CheckpointError(HPSearchError):
    """A checkpoint cannot be read or belongs to a different configuration."""


class EntryPointError(ConfigError):
    """An entry point (``module:attr``, ``file.py:attr``) cannot be imported, found, called or trusted."""


class TaskError(ConfigError):
    """The user's model, data or loss do not fit together (a factory that raises, a wrong output shape)."""
