"""Is a file that a killed writer had open still whole? Read everything that matters.

HDF5 has no journal: a process killed inside a flush can leave objects that point to
metadata never written (seen as "bad heap index", "addr overflow", wrong checksums).
Opening the file is not enough to tell; reading every object header, attribute and
a sample of every dataset is. Run as a subprocess (``python -m``) by the writer, so
that a file bad enough to crash the HDF5 library cannot take the writer down.
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401  (the filters our datasets use: bitshuffle-LZ4 ...)

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


def check(path: str) -> dict:
    """{"open_error": str|None, "entries": {name: first error or None}} for a file."""
    try:
        f = h5py.File(path, "r", locking=False)
    except Exception as exc:
        return {"open_error": f"{type(exc).__name__}: {exc}", "entries": {}}
    entries: dict[str, str | None] = {}
    with f:
        try:
            dict(f.attrs)
            names = list(f)
        except Exception as exc:
            return {"open_error": f"{type(exc).__name__}: {exc}", "entries": {}}
        for name in names:
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
    return {"open_error": None, "entries": entries}


def _status(entry) -> str | None:
    if not isinstance(entry, h5py.Group) or "writer" not in entry:
        return None
    try:
        status = entry["writer/status"][()]
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


def check_in_subprocess(path: str, timeout: float = 600.0) -> dict:
    proc = subprocess.run([sys.executable, "-m", __name__, path], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"open_error": f"checking crashed: {tail[0]}", "entries": {}}
    return json.loads(proc.stdout)


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1])))
