"""The field's readers, as a scientist meets them, for the tests (issue 20 item 7).

- ``read_without_plugins``: plain h5py in a process that never imports hdf5plugin, with
  ``HDF5_PLUGIN_PATH`` unset and no filter plugin where HDF5 looks by default: every
  dataset read whole, a digest of its values per dataset (compared with ``digests``, the
  same files read here, where hdf5plugin may be loaded).
- ``ewoksdata_scan``: ewoksdata's ``iter_bliss_scan_data`` (blissdata's dynamic HDF5
  reader below it) of an entry, every counter of ``measurement`` and every detector's frames
  (``instrument/<detector>/data``, 3-D), point by point equal to the file.
- ``check_default_plot``: silx's ``get_default`` of the root and of the entry is a valid
  NXdata with the signal, axes and shape the scan implies, and nexusformat's
  ``plottable_data`` is that same NXdata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np

#: digest of a dataset's values (same code in both processes)
DIGEST = textwrap.dedent("""
    def digest(value):
        import hashlib
        import numpy as np
        value = np.asarray(value)
        if value.dtype.kind == "O":
            body = repr([v.decode() if isinstance(v, bytes) else v for v in value.ravel().tolist()])
        else:
            body = value.tobytes()
        head = f"{value.dtype.str}{value.shape}".encode()
        return hashlib.sha1(head + (body.encode() if isinstance(body, str) else body)).hexdigest()
""")

#: a reader as on a fresh machine: plain h5py, no filter plugin reachable
PLAIN_READER = DIGEST + textwrap.dedent("""
    import json, os, sys
    assert "HDF5_PLUGIN_PATH" not in os.environ
    import h5py
    # nowhere HDF5 looks for plugins holds one (its default folder, or any configured)
    for i in range(h5py.h5pl.size()):
        folder = h5py.h5pl.get(i).decode()
        assert not os.path.isdir(folder) or not os.listdir(folder), folder
    assert not h5py.h5z.filter_avail(32008)  # bitshuffle: not there
    out, failed = {}, []
    for path in sys.argv[1:]:
        with h5py.File(path, "r", locking=False) as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    try:
                        out[f"{path}::{name}"] = digest(obj[()])
                    except Exception as exc:
                        failed.append(f"{path}::{name}: {exc}")
            f.visititems(visit)
    assert "hdf5plugin" not in sys.modules
    print(json.dumps({"digests": out, "failed": failed}))
""")


def read_without_plugins(paths) -> tuple[dict[str, str], list[str]]:
    """({file::dataset: digest}, failures) read by plain h5py without any filter plugin."""
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    proc = subprocess.run([sys.executable, "-c", PLAIN_READER, *map(str, paths)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["digests"], result["failed"]


def digests(paths) -> dict[str, str]:
    """The same digests, read in this process (hdf5plugin imported: every filter known)."""
    import hdf5plugin  # noqa: F401

    scope: dict = {}
    exec(DIGEST, scope)
    out = {}
    for path in map(str, paths):
        with h5py.File(path, "r", locking=False) as f:
            f.visititems(lambda name, obj: out.__setitem__(f"{path}::{name}", scope["digest"](obj[()]))
                         if isinstance(obj, h5py.Dataset) else None)
    return out


def _name(item) -> str | None:
    return None if item is None else item.name.rpartition("/")[2]


def _nexusformat_plot(path: str, entry: str | None) -> str | None:
    """nexusformat's ``plottable_data`` of the root (``entry`` None) or of an entry: its path."""
    from nexusformat.nexus import nxload

    tree = nxload(path, "r", locking=False)
    try:
        plot = (tree if entry is None else tree[entry]).plottable_data
        return None if plot is None else plot.nxpath
    finally:
        tree.nxfile.close()


def default_plot(path: str, entry: str) -> dict | None:
    """What silx and nexusformat open the entry on: None when the entry has no default
    plot (then neither reader finds one), else its NXdata path, signal, axes and shape."""
    from silx.io.nxdata import get_default

    with h5py.File(path, "r", locking=False) as f:
        nxdata = get_default(f[entry], validate=True)
        if nxdata is None:
            assert "default" not in f[entry].attrs, f"{entry}@default names no valid NXdata"
            out = None
        else:
            assert nxdata.is_valid, nxdata.issues
            out = {"group": nxdata.group.name, "signal": nxdata.signal_dataset_name,
                   "axes": list(nxdata.axes_dataset_names), "shape": tuple(nxdata.signal.shape),
                   "signal_values": np.asarray(nxdata.signal[()]),
                   "axis_values": [None if a is None else np.asarray(a[()]) for a in nxdata.axes]}
    nx_path = _nexusformat_plot(path, entry)
    assert nx_path == (out["group"] if out else None), (entry, nx_path, out and out["group"])
    return out


def root_default_plot(path: str) -> str | None:
    """The NXdata the file opens on, as silx and nexusformat follow the root's @default
    (they must agree)."""
    from silx.io.nxdata import get_default

    with h5py.File(path, "r", locking=False) as f:
        nxdata = get_default(f, validate=True)
        silx_path = None if nxdata is None else nxdata.group.name
    nx_path = _nexusformat_plot(path, None)
    assert nx_path == silx_path, (nx_path, silx_path)
    return silx_path


def ewoksdata_scan(path: str, entry: str) -> tuple[list[str], list[str], int]:
    """(counters, detectors with frames, points) that ewoksdata's ``iter_bliss_scan_data``
    returned for ``entry``, each point asserted equal to the file's datasets."""
    from ewoksdata.data.bliss import iter_bliss_scan_data

    with h5py.File(path, "r", locking=False) as f:
        measurement, instrument = f[entry]["measurement"], f[entry]["instrument"]
        counters = {n: measurement[n][()] for n in measurement
                    if isinstance(measurement[n], h5py.Dataset) and measurement[n].ndim in (1, 2)}
        frames = {n: g["data"][()] for n, g in instrument.items()
                  if isinstance(g, h5py.Group) and isinstance(g.get("data"), h5py.Dataset) and g["data"].ndim == 3}
    number, _, sub = entry.partition(".")
    points = list(iter_bliss_scan_data(path, int(number), subscan=int(sub), lima_names=sorted(frames),
                                       counter_names=sorted(counters), retry_timeout=10, retry_period=0.1))
    expected = min(len(v) for v in {**counters, **frames}.values())
    assert len(points) == expected, (entry, len(points), expected)
    for name, values in {**counters, **frames}.items():
        got = np.asarray([p[name] for p in points])
        assert got.shape == values[:expected].shape, (entry, name, got.shape)
        assert np.array_equal(got, values[:expected], equal_nan=values.dtype.kind == "f"), (entry, name)
    return sorted(counters), sorted(frames), expected


__all__ = ["read_without_plugins", "digests", "default_plot", "root_default_plot", "ewoksdata_scan"]
