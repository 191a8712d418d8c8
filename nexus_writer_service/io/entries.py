"""Scan entries in a file: created whole or not at all, their writer note read back,
their status changed, the file's default entry.

What the scan writer needs of h5py beyond writing plan trees (``io.tree``); the
note's item names come from ``records.NOTE``.
"""

from __future__ import annotations

import h5py

from ..records import NOTE, NOTE_GROUP
from ..states import in_file
from .objects import replace_attr


def has(h5: h5py.File, entry: str) -> bool:
    return entry in h5


def note(h5: h5py.File, entry: str) -> tuple[str | None, str] | None:
    """(scan key, status) of an entry's writer note; None if the entry has no note."""
    grp = h5.get(entry)
    grp = grp.get(NOTE_GROUP) if isinstance(grp, h5py.Group) else None
    if not isinstance(grp, h5py.Group):
        return None

    def text(name: str) -> str | None:
        item = grp.get(name)
        if not isinstance(item, h5py.Dataset):
            return None
        value = item[()]
        return value.decode() if isinstance(value, bytes) else str(value)

    return text(NOTE.scan_key), text(NOTE.status) or ""


def create(h5: h5py.File, entry: str, write) -> None:
    """Make ``entry`` with ``write(parent, name)``, built aside and moved into place in one
    link operation: a writer killed meanwhile leaves a staging group, never a half entry
    (a later run removes its leftovers)."""
    # one name per entry (one writer at a time writes a file): a killed writer's leftover is
    # found by name, never by listing the file's entries (thousands in a long dataset)
    staging = f"{STAGING}{entry.replace('.', '_')}"
    if staging in h5:
        del h5[staging]
    write(h5, staging)
    h5.move(staging, entry)


#: names of entries being built (moved into place when whole)
STAGING = "_nxw_staging_"


def set_status(h5: h5py.File, entries: list[str], status: str, error: str | None = None,
               end_time: str | None = None) -> None:
    """Replace the status of these entries' notes (and add the error if none is there).

    ``end_time``: written last where the entry has none (a failed scan's entry too): readers
    of BLISS files (ewoksdata, blissdata's h5api) wait for it before they read an entry."""
    for entry in entries:
        grp = h5.get(f"{entry}/{NOTE_GROUP}")
        if isinstance(grp, h5py.Group):
            if NOTE.status in grp:
                del grp[NOTE.status]
            grp[NOTE.status] = in_file(status)
            if error and NOTE.error not in grp:
                grp[NOTE.error] = error
            if end_time and "end_time" not in h5[entry]:
                h5[entry]["end_time"] = end_time
    h5.flush()


def prune_empty(h5: h5py.File, entry: str, candidates: list[str]) -> list[str]:
    """Remove the groups among ``candidates`` (paths below ``entry``, deepest first) that
    have no member: made at the scan's start for data that never came (``measurement`` of
    a scan without channels, a detector group its server never filled). Returns their paths.

    A scientist meets an empty group as a dead end, so a finished entry has none. Only the
    groups the start can leave empty are looked at (the rest of the tree is made with its
    content): a look at each is cheap, a walk of the whole entry is not, for every scan.
    """
    top = h5.get(entry)
    if not isinstance(top, h5py.Group):
        return []
    removed = []
    for path in candidates:
        link = top.get(path, getlink=True)
        if isinstance(link, h5py.HardLink):
            grp = top[path]
            if isinstance(grp, h5py.Group) and len(grp) == 0:
                del top[path]
                removed.append(f"{entry}/{path}")
    return removed


def set_default(h5: h5py.File, entry: str) -> None:
    """The entry a viewer opens the file on."""
    replace_attr(h5, "default", entry)


__all__ = ["has", "note", "create", "set_status", "set_default", "prune_empty"]
