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

from ..io.files import not_an_hdf5_target, path_refused
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
    (``io.files.path_refused``), qualifies. A user's text file, folder or link is never
    renamed.
    """
    if not os.path.lexists(path):
        return "is not there any more"
    return not_an_hdf5_target(path) or path_refused(os.path.normpath(path), allowed_roots, strict)


def salvage(path: str, log: logging.Logger | logging.LoggerAdapter,
            cause: str = "by a writer that was killed", force: bool = False) -> set[str] | None:
    """None when ``path`` is whole (or absent); else the entries carried over intact.

    ``force``: move it aside even if it reads well (this process still holds it open
    after failed writes, and HDF5 would hand the broken handle to the next scan).
    """
    if not os.path.lexists(path):
        return None
    refused = not_ours(path)
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
    aside = _aside_name(path)
    os.rename(path, aside)
    why = report["open_error"] or "; ".join(f"{n}: {e}" for n, e in list(damaged.items())[:3]) or "reads well"
    if report["open_error"] or damaged:
        extended = match_allocation_to_size(aside)
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
            # a half-made copy (the disk still full) holds nothing the file aside lacks
            if os.path.exists(path):
                os.remove(path)
            raise
    log.warning("%s was left damaged %s (%s): moved to %s; %d finished entries copied back",
                path, cause, why, os.path.basename(aside), len(kept))
    return kept
