"""Free disk space: one rule for the writer and for the Tango device BLISS asks.

HDF5 has no way back from a write that fails for lack of space: the file handle can
no longer be flushed nor closed, and what was in its metadata cache is lost. So the
writer stops *before* the disk is full: below ``required_mb`` free it writes nothing
(the data wait in Redis), and below ``recommended_mb`` it warns. The Tango device
refuses a scan with the same numbers (ESRF's device properties
``required_disk_space`` / ``recommended_disk_space``, MB, defaults as ESRF's writers).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from typing import Callable
from dataclasses import dataclass

#: bytes per MB, as in the device properties
MB = 1024**2
REQUIRED_MB = 200.0
RECOMMENDED_MB = 1024.0


def existing_folder(path: str) -> str:
    """The nearest folder of the file ``path`` that exists (the file and its folder may not yet)."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def free_mb(path: str) -> float:
    """MB free for an unprivileged user on the disk that holds (or will hold) ``path``."""
    return shutil.disk_usage(existing_folder(path)).free / MB


@dataclass(frozen=True)
class SpaceRule:
    """Below ``required_mb`` nothing is written; below ``recommended_mb`` a warning."""

    required_mb: float = REQUIRED_MB
    recommended_mb: float = RECOMMENDED_MB

    def shortage(self, path: str, margin_mb: float = 0.0) -> str:
        """Why nothing may be written for ``path`` now (``margin_mb`` more is about to be
        written), or "". A disk that cannot be asked is no reason to stop; a rule of 0 MB
        checks nothing (HDF5 then meets the full disk itself: see ``writer.storage``)."""
        if self.required_mb <= 0:
            return ""
        try:
            free = free_mb(path)
        except OSError:
            return ""
        if free - margin_mb >= self.required_mb:
            return ""
        return no_space_message(path, free, self.required_mb)

    def low(self, path: str) -> str:
        """A warning when the disk of ``path`` is below the recommended free space, or ""."""
        if self.recommended_mb <= 0:
            return ""
        try:
            free = free_mb(path)
        except OSError:
            return ""
        if free >= self.recommended_mb:
            return ""
        return (f"disk space low on {existing_folder(path)}: {free:.0f} MB free "
                f"(below the recommended {self.recommended_mb:.0f} MB)")


def no_space_message(path: str, free: float | None = None, required: float | None = None) -> str:
    """The reason a scan gives when the disk of ``path`` is (nearly) full."""
    if free is None:
        try:
            free = free_mb(path)
        except OSError:
            return f"no space left on the disk of {path}"
    below = f" (below the required {required:.0f} MB)" if required else ""
    return f"no space left on {existing_folder(path)}: {free:.1f} MB free{below}"


#: errno values that mean the storage refused a write (not our bug, not the data's)
STORAGE_ERRNOS = {"ENOSPC": 28, "EFBIG": 27, "EDQUOT": 122, "EROFS": 30, "EIO": 5}


def storage_errno(exc: BaseException) -> int | None:
    """The errno of a storage refusal in ``exc`` (h5py puts it in the message only)."""
    number = getattr(exc, "errno", None)
    if number in STORAGE_ERRNOS.values():
        return number
    text = str(exc)
    for value in STORAGE_ERRNOS.values():
        if f"errno = {value}," in text or f"[Errno {value}]" in text:
            return value
    return None


# -- reserving the blocks a write is about to use ----------------------------------------
#
# The free-space rule is checked before a write, but another process (a detector saving
# its frames on the same disk) can take the last blocks between the check and HDF5's
# write. HDF5 cannot survive a failed write (the file handle and, through ids it can no
# longer close, the library's whole state are lost), so the blocks are reserved first:
# fallocate(FALLOC_FL_KEEP_SIZE) allocates them beyond the end of the file without
# changing its size, and HDF5's writes there can no longer fail for want of space.

_FALLOC_FL_KEEP_SIZE = 1
_fallocate: Callable[..., int] | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _fallocate_c = _libc.fallocate
    _fallocate_c.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    _fallocate = _fallocate_c
except (OSError, AttributeError):  # not Linux/glibc: nothing is reserved
    _fallocate = None


def reserve(fd: int, nbytes: int) -> bool | None:
    """Reserve ``nbytes`` on disk beyond the end of the open file ``fd``.

    True: reserved; False: the disk (or the quota) has no room; None: the file system
    cannot reserve (network file systems): the free-space rule alone protects the writes.
    """
    if _fallocate is None or nbytes <= 0:
        return None
    size = os.fstat(fd).st_size
    if _fallocate(fd, _FALLOC_FL_KEEP_SIZE, size, nbytes) == 0:
        return True
    number = ctypes.get_errno()
    if number in (errno.ENOSPC, errno.EDQUOT):
        return False
    return None


def unreserve(fd: int, nbytes: int) -> None:
    """Give back what ``reserve`` kept beyond the end of the file (before it is closed)."""
    if nbytes <= 0:
        return
    # a truncation to the file's own size frees the blocks beyond it (ext4 keeps them
    # through a punched hole past the end; tmpfs frees them either way)
    os.ftruncate(fd, os.fstat(fd).st_size)
