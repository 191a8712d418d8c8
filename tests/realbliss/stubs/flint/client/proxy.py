"""Stub of flint.client.proxy: no Flint process is ever started."""

import logging

from .. import _unavailable

FLINT_LOGGER = logging.getLogger("flint")
FLINT_OUTPUT_LOGGER = logging.getLogger("flint.output")


def check_flint(*args, **kwargs) -> bool:
    """No Flint is running, ever."""
    return False


def get_flint(*args, mandatory: bool = True, **kwargs):
    if not mandatory:
        return None
    _unavailable("get_flint")


def attach_flint(*args, **kwargs):
    _unavailable("attach_flint")


def close_flint(*args, **kwargs) -> None:
    """Nothing to close."""


def restart_flint(*args, creation_allowed: bool = True, **kwargs) -> None:
    """Called by BLISS's ESRF data policy when the proposal changes: nothing to restart."""
