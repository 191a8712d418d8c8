"""Reading a file that may be being written: the one rule for retrying.

Without SWMR, a reader that opens an HDF5 file while a writer (ours, in another
process) flushes it can see a half-written state: "address of object past end of
allocation", "bad object header version number", "wrong B-tree signature", a dataset
shorter than its chunk index says. The next flush makes it whole again, so such an
error is retried: the whole read again (the file opened anew, so nothing stale is
cached), for at most ``timeout`` seconds; then the last error is raised as it was.

The rule is silx's (``silx.io.h5py_utils.retry_h5py_error``: OSError, RuntimeError and
"Unable to open object" KeyErrors raised inside h5py), less what no flush repairs: a
missing file, a folder, no permission. Used by every reader of ours that may open a
file being written: the demo's summary, ``nexus-writer show``, master-file linking,
the crash-recovery check.
"""

from __future__ import annotations

import errno
import functools
import logging
import time

from silx.io.h5py_utils import retry_h5py_error

_logger = logging.getLogger(__name__)

#: how long a reader keeps trying (a writer flushes at least every 0.5 s)
TIMEOUT = 10.0
#: pause between two tries
PERIOD = 0.1

#: errors no flush of the writer repairs
_PERMANENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR}


def transient(exc: BaseException) -> bool:
    """True if ``exc`` may come from reading a file while it is being written."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return False
    return bool(retry_h5py_error(exc))


def call(fn, *args, timeout: float = TIMEOUT, period: float = PERIOD, rule=transient, **kwargs):
    """``fn(*args, **kwargs)``, called again while it raises a transient error (``rule``),
    for at most ``timeout`` seconds (at least twice); the last error is raised when it is over."""
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        tries += 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not rule(exc) or (tries >= 2 and time.monotonic() >= deadline):
                raise
            _logger.debug("%s: %s: %s (a file being written?): try %d again", getattr(fn, "__name__", fn),
                          type(exc).__name__, exc, tries + 1)
        time.sleep(period)


def retried(fn=None, *, timeout: float = TIMEOUT, period: float = PERIOD):
    """Decorator: the function reads whole (opens and closes its files) and is called
    again on transient errors (``call``)."""
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            return call(f, *args, timeout=timeout, period=period, **kwargs)
        return wrapper

    return decorate(fn) if fn is not None else decorate


__all__ = ["transient", "call", "retried", "TIMEOUT", "PERIOD"]
