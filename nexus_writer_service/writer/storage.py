"""The storage under a scan: room on the disk, readers' locks, files broken or taken away.

A beamline's data disk fills up, viewers hold HDF5 locks, people and clean-up scripts
move, delete and truncate files while a scan runs. None of it may cost data that Redis
still holds, or leave nothing readable at a path where there was a file:

- below the required free space nothing is written: the data wait in Redis, the scan
  says why, and it goes on once there is room (``wait_for_room``);
- a file locked by a reader is waited for, not failed (``open_when_free``);
- a file whose writes failed in this process (the disk filled inside HDF5) is rebuilt
  before anyone writes to its path again, once there is room (``rebuild``);
- what each fault did to a scan is said in words a beamline scientist can act on.
"""

from __future__ import annotations

import errno
import os
import time
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any, Callable

from ..io import entries
from ..io.files import FileHandle, FileLocked, FileRegistry
from ..io.space import MB, SpaceRule
from ..io.tree import TreeWriter
from ..mapping import layout
from ..states import FAILED
from .salvage import NoRoomToRebuild, salvage

#: a wait for room or for a lock is said at its start and then this often (seconds)
WAIT_WARNING_PERIOD = 60.0


#: folder -> when a low disk was last said (it concerns every scan there: said once in a while)
_LOW_SAID: dict[str, float] = {}
_LOW_PERIOD = 600.0


def _say_low(path: str) -> bool:
    folder = os.path.dirname(path)
    now = time.monotonic()
    if now - _LOW_SAID.get(folder, -_LOW_PERIOD) < _LOW_PERIOD:
        return False
    _LOW_SAID[folder] = now
    return True


class GivenUp(OSError):
    """The storage did not let the scan be written for as long as it could wait: the scan
    is INCOMPLETE with the reason (its data stay in Redis until they expire)."""


class NoRoom(GivenUp):
    """The disk stayed below the required free space for as long as the scan could wait."""


@dataclass
class Waiter:
    """How a scan waits for its storage: what it checks, how it tells, when it gives up.

    ``pause()`` is called before each wait (the scan gives its working slot back and
    checks it still owns the session); ``available()`` says whether the scan's data are
    still in Redis (no point waiting for a disk or a lock once they are gone).
    """

    rule: SpaceRule
    limit: float
    period: float
    warn: Callable[[str], None]
    pause: Callable[[], None] = lambda: None
    resume: Callable[[], None] = lambda: None
    available: Callable[[], bool] = lambda: True

    def _wait(self, what: str, still, started: float, reason: str | None = None) -> bool:
        """Wait while ``still()`` returns a reason (``reason``: the first, already known);
        True once it returns ""."""
        reason, last_said, every = (still() if reason is None else reason), None, WAIT_WARNING_PERIOD
        if not reason:
            return True
        self.pause()
        try:
            while reason:
                now = time.monotonic()
                if last_said is None or now - last_said >= every:
                    waited = f" (waiting for {now - started:.0f} s)" if last_said is not None else ""
                    self.warn(f"{reason}: {what}{waited}")
                    if last_said is not None:  # a long wait is said less and less often
                        every = min(every * 2, 3600.0)
                    last_said = now
                if now - started >= self.limit or not self.available():
                    return False
                time.sleep(min(self.period, max(0.0, self.limit - (now - started))) or 0.01)
                reason = still()
        finally:
            self.resume()
        return True

    def room(self, path: str, margin_mb: float = 0.0, started: float | None = None) -> str:
        """"" once the disk of ``path`` has room; else why, after waiting ``limit``."""
        low = self.rule.low(path)
        if low and _say_low(path):
            self.warn(low)
        started = time.monotonic() if started is None else started
        ok = self._wait("nothing is written until there is room; the data wait in Redis",
                        lambda: self.rule.shortage(path, margin_mb), started)
        return "" if ok else (self.rule.shortage(path, margin_mb) or "no room")

    def open_when_free(self, files: FileRegistry, path: str, log, reserve_mb: float) -> FileHandle:
        """The file's handle, once there is room and no other process locks it.

        A file broken in this process (failed writes) or left damaged by a crash is
        rebuilt first (``rebuild``), once there is room for its copy. A reader holding
        HDF5's lock (silx, PyMca, h5py with locking) is waited for as long as the scan's
        data stay in Redis, naming the process that holds it.
        """
        started, margin = time.monotonic(), 0.0
        while True:
            shortage = self.room(path, margin_mb=margin, started=started)
            if shortage:
                raise NoRoom(28, f"{shortage}: given up after {time.monotonic() - started:.0f} s; "
                                 "nothing written, the data stay in Redis")
            try:
                with files.path_lock(path):  # one scan rebuilds, the others then open the new file
                    rebuild(files, path, log, reserve_mb)
                    return files.acquire(path)
            except NoRoomToRebuild:
                try:  # wait for room for the copy too
                    margin = os.path.getsize(path) / MB + 1.0
                except OSError:
                    margin = 0.0
                continue
            except FileLocked as locked:
                #: the last refusal, and the handle once it is free
                state: dict[str, Any] = {"error": locked}

                def why(error: FileLocked) -> str:
                    who = f" by {', '.join(error.holders)}" if error.holders else ""
                    return f"{path} is locked{who} (a reader holding HDF5's file lock)"

                def still_locked():
                    try:
                        handle = files.acquire(path)
                    except FileLocked as again:
                        state["error"] = again
                        return why(again)
                    state["handle"] = handle
                    return ""

                if self._wait("the scan is written once the reader lets it go; the data wait in Redis",
                              still_locked, started, why(locked)):
                    return state["handle"]
                raise GivenUp(errno.EAGAIN, f"{state['error'].strerror}: given up after "
                                            f"{time.monotonic() - started:.0f} s; nothing written") from locked


def rebuild(files: FileRegistry, path: str, log, reserve_mb: float) -> set[str] | None:
    """The file at ``path``, if broken in this process (failed writes) or left to check
    (a crash, with no room to rebuild then), replaced by a readable copy of its finished
    entries (the broken one kept aside); None if nothing was needed.

    NoRoomToRebuild when there is no room for the copy: the file stays as it is.
    """
    broken = files.needs_rebuild(path)
    if not broken and path not in files.suspects:
        for entry_names, info, error in files.failed_entries.pop(path, []):  # the file is whole
            mark_failed(files, path, entry_names, info, error)
        return None
    cause = "after failed writes" if broken else "by a writer that was killed"
    kept = salvage(path, log, cause=cause, force=broken, reserve_mb=reserve_mb) or set()
    files.suspects.discard(path)
    for entry_names, info, error in files.failed_entries.pop(path, []):
        mark_failed(files, path, [e for e in entry_names if e not in kept], info, error)
    return kept


def mark_failed(files: FileRegistry, path: str, names: list[str], info: dict, error: str) -> None:
    """Entries whose writes failed, written (or marked, where what was written reads) as
    FAILED with the reason (their data are in Redis)."""
    if not names:
        return
    handle = files.acquire(path)
    try:
        with handle.lock:
            writer = TreeWriter()
            for name in names:
                if entries.has(handle.h5, name):
                    entries.set_status(handle.h5, [name], FAILED, error,
                                       end_time=datetime.now(timezone.utc).astimezone().isoformat())
                else:
                    writer.write(handle.h5, name, layout.failed_tree(info, error))
            writer.finish_links()
        handle.flush()
    finally:
        files.release(handle)


__all__ = ["GivenUp", "NoRoom", "NoRoomToRebuild", "Waiter", "rebuild", "mark_failed"]
