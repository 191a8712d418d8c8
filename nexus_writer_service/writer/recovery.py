"""What a scan does when its file or its session is not what it was: entries left by a
writer that died (resumed), another writer taking the session over (hand-over), the file
taken away (written again from Redis), writes refused (the file made readable again)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from ..io import entries
from ..io.files import FileHandle, FileRegistry
from ..mapping import layout
from ..mapping.layout import ScanPlan
from ..states import FINAL_STATES
from . import storage
from .salvage import NoRoomToRebuild, readable_in_place


class EntryExistsError(RuntimeError):
    pass


class AlreadyWritten(Exception):
    """This scan's entries were finished by an earlier run of the writer."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


class Superseded(Exception):
    """Another writer took the session over: this scan is its now (it resumes it from the file)."""


#: a file taken away is written again at most this many times
MAX_REWRITES = 3


def own_unfinished(h5, names: list[str], key: str, path: str) -> bool:
    """True if these entries are this scan's, left unfinished by a writer that died;
    raises if they are another scan's (never overwritten) or finished."""
    for name in names:
        note = entries.note(h5, name)
        if note is None or note[0] != key:
            raise EntryExistsError(f"entry {name} already exists in {path}: not overwritten")
        status = note[1]
        if status in FINAL_STATES:
            raise AlreadyWritten(f"entry {name} was already written ({status})", status)
    return True


def finished_elsewhere(handle: FileHandle) -> list[str]:
    """Finished entries of the lost file other than this scan's (reported once per file)."""
    if handle.lost_reported:
        return []
    handle.lost_reported = True
    try:  # the entry names are in HDF5's cache even when the file is cut
        with handle.lock:
            names = list(handle.h5)
    except Exception:
        return ["(which ones could not be read)"]
    return [n for n in names if n not in handle.writing and not n.startswith(entries.STAGING)]


def after_failed_writes(files: FileRegistry, path: str, names: list[str], info: dict, error: str | None,
                        log: logging.LoggerAdapter, reserve_mb: float) -> None:
    """The file cannot be written any more (disk full...): readers get a readable one.

    With room for it, the broken file moves aside and its intact finished entries go
    into a fresh file at the same path, with this scan's entries marked FAILED (its
    data stay in Redis and in the file aside). Without room nothing is moved: the file
    stays at its path (its end of allocation set to its real size if HDF5 cannot read
    it otherwise) and is rebuilt before anything is written to the path again.
    """
    files.failed_entries.setdefault(path, []).append((list(names), info, error))
    try:
        storage.rebuild(files, path, log, reserve_mb)
    except NoRoomToRebuild as exc:
        log.error("%s", exc)
        readable_in_place(path, log)
    except Exception as exc:
        log.error("could not make %s readable again: %s: %s", path, type(exc).__name__, exc)


def mark(handle: FileHandle, names: list[str], plan: ScanPlan | None, status: str, error: str | None,
         log: logging.LoggerAdapter) -> None:
    """Best effort: say in the file that this scan's entries failed."""
    if not names:
        return
    try:
        with handle.lock:
            entries.set_status(handle.h5, names, status, error,
                               end_time=datetime.now(timezone.utc).astimezone().isoformat())
            for entry in (plan.entries if plan else []):
                entries.prune_empty(handle.h5, entry.name, layout.maybe_empty(entry))
    except Exception:
        log.debug("could not mark the file as %s", status, exc_info=True)
