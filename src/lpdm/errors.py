"""The errors a user can fix: each message is one line, printed without a traceback.

Kept apart from the modules that raise them (configuration, environments, run directories)
so that the command line can catch them without importing torch or Gymnasium.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An option value that cannot be used."""


class EnvError(ValueError):
    """An environment lpdm cannot use."""


class RunError(RuntimeError):
    """A run directory that cannot be used as asked."""


USER_ERRORS = (ConfigError, EnvError, RunError)
