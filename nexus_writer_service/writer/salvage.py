"""After a crash or failed writes: a damaged file is moved aside, not repaired in place.

What can still be read whole (finished entries) is copied into a fresh file at the
same path; everything else is written again from Redis by the recovery. The damaged
file stays beside it (``<name>.damaged-<time>.h5``): nothing is thrown away. The one
change made to it is its superblock's end of allocation, set to its real size, without
which HDF5 reads none of it.
"""

from __future__ import annotations

import logging
import os
import time

from ..io.path_policy import not_an_hdf5_target, path_refused
from ..io.space import MB, free_mb
from ..io.integrity import check_in_subprocess, copy_finished_in_subprocess, match_allocation_to_size
from ..states import FINAL_STATES


def _aside_name(path: str) -> str:
    stem, ext = os.path.splitext(path)
    base = f"{stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = f"{base}{ext}", 2
    while os.path.exists(candidate):  # never replace an earlier damaged file
        candidate, n = f"{base}-{n}{ext}", n + 1
    return candidate


def not_ours(path: str, allowed_roots=(), strict: bool = False) -> str | None:
    """Why ``path`` must not be moved aside, or None.

    The list of files to check comes from Redis (what a killed writer had open, the
    files of unfinished scans): only a regular file that still starts like HDF5, reached
    without a symbolic link in its last component, that the writer may write
    (``io.path_policy``), qualifies. A user's text file, folder or link is never
    renamed.
    """
    if not os.path.lexists(path):
        return "is not there any more"
    return not_an_hdf5_target(path) or path_refused(os.path.normpath(path), allowed_roots, strict)


class NoRoomToRebuild(OSError):
    """The disk has no room for the fresh copy: the file stays where it is, as it is."""


def room_for_copy(path: str, reserve_mb: float = 0.0) -> str:
    """Why a fresh copy of ``path`` cannot be made beside it now (else ""): the copy of the
    finished entries is at most the file's size, and ``reserve_mb`` must stay free."""
    try:
        need = os.path.getsize(path) / MB + reserve_mb + 1.0
        free = free_mb(path)
    except OSError as exc:
        return f"cannot check the free space for {path}: {exc.strerror}"
    if free >= need:
        return ""
    return (f"{free:.1f} MB free on {os.path.dirname(path)}, a fresh copy needs {need:.1f} MB: "
            "the file stays where it is until there is room")


def salvage(path: str, log: logging.Logger | logging.LoggerAdapter,
            cause: str = "by a writer that was killed", force: bool = False,
            reserve_mb: float = 0.0) -> set[str] | None:
    """None when ``path`` is whole (or absent); else the entries carried over intact.

    ``force``: move it aside even if it reads well (this process still holds it open
    after failed writes, and HDF5 would hand the broken handle to the next scan).
    A readable file is never moved aside unless its replacement can be made: without
    room for the copy (``reserve_mb`` kept free), NoRoomToRebuild and nothing moves; a
    copy that fails midway puts the file back at its path.
    """
    if not os.path.lexists(path):
        return None
    # forced: the file of this process's own broken handle (same inode), whatever it
    # holds now (truncated to nothing, overwritten): ours to move aside
    refused = None if force and os.path.isfile(path) and not os.path.islink(path) else not_ours(path)
    if refused:
        log.warning("%s is not checked after a crash: it %s (only HDF5 files the writer made are "
                    "moved aside)", path, refused)
        return None
    report = check_in_subprocess(path)
    damaged = {name: err for name, err in report["entries"].items() if err}
    if report["open_error"] is None and not damaged and not force:
        return None
    if report.get("foreign"):  # another writer's entries: not ours to move, whatever state
        log.warning("%s is not moved aside: it holds entries this writer did not write (%s)",
                    path, ", ".join(report["foreign"][:5]))
        return None
    no_room = room_for_copy(path, reserve_mb)
    if no_room:
        raise NoRoomToRebuild(28, f"{path} is not rebuilt now: {no_room}")
    aside = _aside_name(path)
    os.rename(path, aside)
    why = report["open_error"] or "; ".join(f"{n}: {e}" for n, e in list(damaged.items())[:3]) or "reads well"
    if report["open_error"] or damaged:
        try:
            extended = match_allocation_to_size(aside)
        except (OSError, ValueError):  # too short or not HDF5 at all (truncated, overwritten)
            extended = None
        if extended:
            log.info("%s: end of allocation %d -> %d (the real size), to read what was written",
                     os.path.basename(aside), *extended)
            report = check_in_subprocess(aside)
            damaged = {name: err for name, err in report["entries"].items() if err}
    kept: set[str] = set()
    if report["open_error"] is None:
        intact = [name for name in report["entries"] if name not in damaged]
        try:
            kept = copy_finished_in_subprocess(aside, path, intact, FINAL_STATES)
        except Exception:
            # a half-made copy (the disk filled again) holds nothing the file aside lacks:
            # the file goes back to its path (never nothing there)
            if os.path.exists(path):
                os.remove(path)
            os.rename(aside, path)
            raise
    log.warning("%s was left damaged %s (%s): moved to %s; %d finished entries copied back",
                path, cause, why, os.path.basename(aside), len(kept))
    return kept


def readable_in_place(path: str, log: logging.Logger | logging.LoggerAdapter) -> bool:
    """After failed writes with no room to rebuild: make the file at ``path`` readable where
    it is, if that needs nothing but its end of allocation set to its real size (a few
    bytes of its superblock: no room needed). True if readers can open it."""
    if not os.path.exists(path):
        return False
    report = check_in_subprocess(path)
    if report["open_error"] is not None:
        extended = match_allocation_to_size(path)
        if extended:
            log.info("%s: end of allocation %d -> %d (the real size), so that it reads",
                     os.path.basename(path), *extended)
        report = check_in_subprocess(path)
    if report["open_error"] is not None:
        log.error("%s does not read (%s): left as it is; its finished entries are rebuilt from it "
                  "once there is room", path, report["open_error"])
        return False
    damaged = sorted(name for name, err in report["entries"].items() if err)
    whole = len(report["entries"]) - len(damaged)
    log.warning("%s stays at its path and reads (%d entries whole%s); rebuilt once there is room",
                path, whole, f", damaged: {', '.join(damaged[:5])}" if damaged else "")
    return True
