"""The exception tree under the import path the seed uses; see :mod:`multiagents.errors`."""

from multiagents import errors as _errors
from multiagents.errors import *  # noqa: F403 - this module is an alias of multiagents.errors

__all__ = list(_errors.__all__)
