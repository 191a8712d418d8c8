"""Is a file that a killed writer had open still whole? Read everything that matters.

HDF5 has no journal: a process killed inside a flush can leave objects that point to
metadata never written (seen as "bad heap index", "addr overflow", wrong checksums).
Opening the file is not enough to tell; reading every object header, attribute and
a sample of every dataset is. Run as a subprocess (``python -m``) by the writer, so
that a file bad enough to crash the HDF5 library cannot take the writer down.

Errors of the kind a file being written shows (``io.retry``: another process may be
flushing it) are checked again, for ``SETTLE_TIMEOUT`` seconds (the file opened anew, the
failed entries alone read again), before the file is called damaged: only damage that
stays is reported.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import time
from typing import Any

import h5py

import hdf5plugin  # noqa: F401  (registers the filters our datasets use: bitshuffle-LZ4 ...)

from ..records import NOTE, NOTE_GROUP
from . import retry

#: reads again are logged where io.retry logs its own
_retry_log = logging.getLogger(retry.__name__)

#: how long damage must stay to be damage (a writer flushes at least every 0.5 s)
SETTLE_TIMEOUT = 1.0

#: datasets up to this many elements are read whole; bigger ones at both ends
_READ_WHOLE = 100_000


def _read(obj) -> None:
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        if obj.size <= _READ_WHOLE or obj.ndim == 0:
            obj[()]
        elif obj.shape[0]:
            obj[:1]
            obj[-1:]


class _Unsettled(Exception):
    """The file could not be opened for a reason a writer's next flush could repair."""

    def __init__(self, report: dict):
        super().__init__(report)
        self.report = report


def _opened(path: str, only=None) -> tuple[dict, dict]:
    report, errors = _check(path, only)
    if report["open_error"] is not None and any(retry.transient(e) for e in errors.values()):
        raise _Unsettled(report)
    return report, errors


def check(path: str, timeout: float = SETTLE_TIMEOUT) -> dict:
    """{"open_error": str|None, "entries": {name: first error or None}, "foreign": [...]}
    for a file; errors are those still there after ``timeout`` seconds of checking again
    (the file opened anew each time; only the entries that failed are read again, each
    a short read between two flushes of a writer)."""
    deadline = time.monotonic() + timeout
    again: dict[str, Any] = dict(timeout=timeout, period=0.2, rule=lambda e: isinstance(e, _Unsettled))
    try:
        report, errors = retry.call(_opened, path, **again)
    except _Unsettled as unsettled:
        return unsettled.report
    pending = {name for name, exc in errors.items() if retry.transient(exc)}
    while pending and time.monotonic() < deadline:
        _retry_log.debug("check %s: %s again (a file being written?)", path, ", ".join(sorted(pending)[:5]))
        time.sleep(0.2)
        try:
            recheck, errors = _opened(path, pending)
        except _Unsettled:
            continue
        for name in pending:
            report["entries"][name] = recheck["entries"].get(name, report["entries"][name])
        pending = {name for name, exc in errors.items() if retry.transient(exc)}
    return report


def _check(path: str, only=None) -> tuple[dict, dict]:
    """(report, {entry name: its error}) for one reading of the file (of the entries
    ``only``, when given; the key of an error opening the file is None)."""
    errors: dict = {}
    try:
        f = h5py.File(path, "r", locking=False)
    except Exception as exc:
        return {"open_error": f"{type(exc).__name__}: {exc}", "entries": {}}, {None: exc}
    entries: dict[str, str | None] = {}
    with f:
        try:
            dict(f.attrs)
            names = list(f)
        except Exception as exc:
            return {"open_error": f"{type(exc).__name__}: {exc}", "entries": {}}, {None: exc}
        for name in names if only is None else [n for n in names if n in only]:
            try:
                item = f.get(name, getlink=True)
                if isinstance(item, h5py.HardLink):
                    node = f[name]
                    _read(node)
                    if isinstance(node, h5py.Group):
                        # soft/external links are not followed: a dangling one is not damage
                        node.visititems(lambda _, o: _read(o))
                entries[name] = None
            except Exception as exc:
                entries[name] = f"{type(exc).__name__}: {exc}"
                errors[name] = exc
        foreign = [] if only is not None else \
            [name for name in names if not name.startswith("_nxw_staging_") and not _ours(f, name)]
    return {"open_error": None, "entries": entries, "foreign": foreign}, errors


def _ours(f: h5py.File, name: str) -> bool:
    """The entry carries this writer's note (a damaged one that cannot tell counts as ours:
    only a readable note of another writer, or none at all, says it is not)."""
    try:
        item = f.get(name, getlink=True)
        if not isinstance(item, h5py.HardLink):
            return False  # a link: nothing we ever write at the top level
        writer = f[name].get(f"{NOTE_GROUP}/{NOTE.writer}")
    except Exception:
        return True
    if writer is None:
        return False
    try:
        value = writer[()]
    except Exception:
        return True
    return (value.decode() if isinstance(value, bytes) else str(value)) == "nexus_writer_service"


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def match_allocation_to_size(path: str) -> tuple[int, int] | None:
    """Set the superblock's end-of-file address to the file's real size.

    After failed or interrupted writes the two disagree and HDF5 refuses the whole file:
    objects written past the recorded end ("address of object past end of allocation":
    ``h5clear -i`` repairs this one), or a recorded end the disk never received
    ("truncated file"). With the end at the real size, every object that was written
    reads again and the others fail alone. Only superblock versions 0 and 1 with 8-byte
    addresses (h5py's default) are handled. Returns (old, new), or None if unchanged.
    """
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        head = f.read(56)
        if len(head) < 56 or head[:8] != _SIGNATURE or head[8] not in (0, 1) or head[13] != 8:
            return None
        offset = 40 if head[8] == 0 else 44
        (eoa,) = struct.unpack_from("<Q", head, offset)
        if eoa == size:
            return None
        f.seek(offset)
        f.write(struct.pack("<Q", size))
    return eoa, size


def _status(entry) -> str | None:
    if not isinstance(entry, h5py.Group) or NOTE_GROUP not in entry:
        return None
    try:
        status = entry[f"{NOTE_GROUP}/{NOTE.status}"][()]
    except Exception:
        return ""
    return status.decode() if isinstance(status, bytes) else str(status)


def copy_finished(src_path: str, dst_path: str, names: list[str], final_states) -> set[str]:
    """Copy into a new file (links kept) the entries that are not half-written: those whose
    writer note says finished, and those without one (master files, other writers')."""
    kept: set[str] = set()
    with h5py.File(src_path, "r", locking=False) as src, h5py.File(dst_path, "w-", track_order=True) as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in names:
            status = _status(src[name])
            if status in final_states or status is None:
                src.copy(src[name], dst, name=name)
                kept.add(name)
    return kept


def _run(*args: str, timeout: float) -> Any:
    """What the child prints (JSON): its shape is the command's (``check``: a dict)."""
    proc = subprocess.run([sys.executable, "-m", __name__, *args], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise RuntimeError(tail[0])
    return json.loads(proc.stdout)


#: a check that crashed (HDF5 itself can, on a file caught mid-flush) is run again this often
CRASH_RETRIES = 2


def check_in_subprocess(path: str, timeout: float = 600.0) -> dict:
    """``check`` in a child process; a crash is checked again (``CRASH_RETRIES`` times): a
    file another process was flushing reads whole the next time, a damaged one crashes again."""
    for attempt in range(CRASH_RETRIES + 1):
        try:
            return _run("check", path, timeout=timeout)
        except RuntimeError as exc:
            crash = exc
            time.sleep(SETTLE_TIMEOUT / 4)
    return {"open_error": f"checking crashed: {crash}", "entries": {}}


def copy_finished_in_subprocess(src_path: str, dst_path: str, names: list[str], final_states,
                                timeout: float = 3600.0) -> set[str]:
    """In another process: this one may still hold ``src_path`` open (HDF5 refuses a
    second open of one file with other flags, and the file may crash the library)."""
    return set(_run("copy", src_path, dst_path, json.dumps(list(names)), json.dumps(sorted(final_states)),
                    timeout=timeout))


if __name__ == "__main__":
    if sys.argv[1] == "check":
        print(json.dumps(check(sys.argv[2])))
    else:
        _, _, src, dst, names, states = sys.argv
        print(json.dumps(sorted(copy_finished(src, dst, json.loads(names), set(json.loads(states))))))
