"""The physical bound: what a writer cannot beat on this machine.

Two child processes (so that neither shares an interpreter with the benchmark):

``read``: a plain read of the same Redis streams with blissdata (one ``CursorGroup``
over every data stream of each scan, ``get_data()`` of each view, nothing else).
Runs while the writer is paused, right after publishing; best of two passes.

``write``: plain h5py appending the same arrays to chunked datasets, created with the
same chunk shape, filters (e.g. bitshuffle-LZ4 through hdf5plugin) and fill value as
the dataset OUR writer made for that channel (read back from its file), in the
batches a draining writer receives: blissdata's ``CursorGroup.read`` returns at most
100 sends per stream, so ``100 x`` the publisher's batch. The same run also times
appends at the publisher's batch size (``write_pub_batch_s``, for reference). S5's
bound is the VDS over the lima files, created in one call, plus the ROI counter;
S6's the VDS over the Lima2 receivers' files (frames dealt round robin: one strided
source per file), S7's one VDS per MOSCA detector over its files, plus their 0D
channels. The read side reads every stream of the scan (detector statuses too).
Data are generated before the clock starts; the clock stops after ``close()``.

The bound is read + write (a writer cannot write a point before reading it); both
parts are reported. With ``"plain"`` in the plan (S2_live's floor) the datasets get our
chunks but no filter: what an uncompressed writer would cost.

    python -m benchmarks.bound read URL KEY [KEY ...]
    python -m benchmarks.bound write PLAN.json
"""

from __future__ import annotations

import json
import os
import sys
import time

import h5py
import numpy as np

from nexus_writer_service.vds_mapping import VdsMapping

#: blissdata's CursorGroup.read asks Redis for at most this many entries per stream
READ_GRANULARITY = 100


def plain_read(url: str, keys: list[str]) -> dict:
    from blissdata.redis_engine.store import DataStore

    ds = DataStore(url)
    best, npoints = None, 0
    for _ in range(2):  # best of two: a bound, not a first-touch measurement
        t, npoints = _read_once(ds, keys)
        best = t if best is None else min(best, t)
    return {"seconds": best, "points": npoints}


def _read_once(ds, keys: list[str]) -> tuple[float, int]:
    from blissdata.exceptions import EndOfStream
    from blissdata.streams import CursorGroup
    from blissdata.streams.default import Stream

    t0 = time.perf_counter()
    npoints = 0
    for key in keys:
        scan = ds.load_scan(key)
        # raw event streams: neither a detector server nor the fallback file is asked
        streams = [Stream(s.event_stream) for s in scan.streams.values()
                   if s.event_stream.info.get("plugin") != "scan_sequence"]
        group = CursorGroup(streams)
        while True:
            try:
                views = group.read(block=True, timeout=0.1)
            except EndOfStream:
                break
            for view in views.values():
                npoints += len(view.get_data())
    return time.perf_counter() - t0, npoints


def _create(grp: h5py.Group, name: str, dtype, point_shape: tuple, ref: h5py.Dataset | None,
            plain: bool = False) -> h5py.Dataset:
    """An empty growing dataset with OUR writer's creation properties for the channel.

    The dataset creation property list (chunks, filter pipeline with its options,
    fill value) is copied as is from our writer's dataset, so both compress alike;
    ``plain``: without its filters (the floor of S2_live: an uncompressed write).
    """
    shape = (0,) + tuple(point_shape)
    maxshape = (None,) + tuple(point_shape)
    if ref is None:  # no reference: default chunks, unfiltered
        return grp.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=True)
    import hdf5plugin  # noqa: F401  registers plugin filters (bitshuffle...)

    dcpl = _user_dcpl(ref, filters=not plain)
    space = h5py.h5s.create_simple(shape, tuple(h5py.h5s.UNLIMITED if m is None else m for m in maxshape))
    dsid = h5py.h5d.create(grp.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return h5py.Dataset(dsid)


#: filters whose stored parameters start with values their set_local callback prepends
#: (bitshuffle: major, minor, element size), which must not be given again
_PREPENDED = {32008: 3}


def _user_dcpl(ref: h5py.Dataset, filters: bool = True):
    """A creation property list equal to ``ref``'s as a user would have asked for it.

    Copying the list as stored is not enough: HDF5 runs the filters' ``set_local``
    callbacks again at creation, and bitshuffle would prepend its version and element
    size a second time (and silently lose LZ4).
    """
    ref_dcpl = ref.id.get_create_plist()
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(ref_dcpl.get_chunk())
    fill = np.zeros((1,), dtype=ref.dtype)
    ref_dcpl.get_fill_value(fill)
    dcpl.set_fill_value(fill)
    dcpl.set_fill_time(ref_dcpl.get_fill_time())
    dcpl.set_alloc_time(ref_dcpl.get_alloc_time())
    for i in range(ref_dcpl.get_nfilters() if filters else 0):
        code, flags, values, _ = ref_dcpl.get_filter(i)
        dcpl.set_filter(code, flags, tuple(values[_PREPENDED.get(code, 0):]))
    return dcpl


def _arrays(plan: dict) -> list[dict]:
    from .scenarios import generate, lima_detector
    from nexus_writer_service.simulation.lima import frames

    out = []
    for d in plan["datasets"]:
        if d["kind"] == "roi":  # lima ROI counter: sum of each frame
            img = frames(lima_detector(), d["npoints"])
            data = img.reshape(len(img), -1).sum(axis=1).astype(d["dtype"])
        else:
            data = generate(d["seed"], d["dtype"], tuple(d["point_shape"]), 0, d["npoints"])
        out.append(dict(d, data=data))
    return out


def _write(path: str, plan: dict, arrays: list[dict], batch: int) -> float:
    ref = h5py.File(plan["reference"], "r", locking=False) if plan.get("reference") else None
    refs = []
    for a in arrays:
        rd = ref.get(a["ref"]) if (ref is not None and a.get("ref")) else None
        refs.append(rd if isinstance(rd, h5py.Dataset) else None)
    if os.path.exists(path):
        os.unlink(path)
    os.sync()  # as before the writer's drain: no earlier run's writeback in the way
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:  # the reference stays open: reading its properties is not timed
        by_entry: dict[str, list[int]] = {}
        for i, a in enumerate(arrays):
            by_entry.setdefault(a["entry"], []).append(i)
        for entry, idx in by_entry.items():  # scans one after another, as S3 publishes them
            grp = f.create_group(entry)
            dsets = []
            for i in idx:
                a = arrays[i]
                dsets.append(_create(grp, f"d{i}", a["dtype"], a["point_shape"], refs[i], plan.get("plain", False)))
            n = max(arrays[i]["npoints"] for i in idx)
            for start in range(0, n, batch):
                for dset, i in zip(dsets, idx):
                    chunk = arrays[i]["data"][start:start + batch]
                    if len(chunk):
                        dset.resize(start + len(chunk), axis=0)
                        dset[start:start + len(chunk)] = chunk
        lima = plan.get("lima")
        if lima:
            layout = h5py.VirtualLayout(shape=(lima["nframes"],) + tuple(lima["shape"]), dtype=lima["dtype"])
            per = lima["frames_per_file"]
            for k, fname in enumerate(lima["files"]):
                n = min(per, lima["nframes"] - k * per)
                src = h5py.VirtualSource(os.path.relpath(fname, os.path.dirname(path)), lima["data_path"],
                                         shape=(per,) + tuple(lima["shape"]))
                layout[k * per:k * per + n] = src[:n]
            f[arrays[0]["entry"]].create_virtual_dataset("image", layout, fillvalue=0)
        for k, vds in enumerate(plan.get("vds", [])):  # Lima2 frames, MOSCA spectra
            layout = h5py.VirtualLayout(shape=tuple(vds["shape"]), dtype=vds["dtype"])
            for record in vds["sources"]:
                add_virtual_source(layout, mapping_from_record(record))
            f[arrays[0]["entry"]].create_virtual_dataset(f"vds{k}", layout, fillvalue=0)
    elapsed = time.perf_counter() - t0
    if ref is not None:
        ref.close()
    return elapsed


def mapping_record(m: VdsMapping) -> dict:
    """A mapping as JSON (the plan reaches the child process as a file)."""
    return {"frames": m.frames.tolist(), "src_file": m.src_file, "src_dataset": m.src_dataset,
            "src_frames": m.src_frames.tolist(), "src_shape": list(m.src_shape)}


def mapping_from_record(record: dict) -> VdsMapping:
    return VdsMapping(record["frames"], record["src_file"], record["src_dataset"], record["src_frames"],
                      record["src_shape"])


def _even_slice(indices: np.ndarray) -> slice:
    """``indices`` as one slice; ValueError unless they are evenly spaced (h5py's layouts
    take slices only)."""
    step = int(indices[1] - indices[0]) if len(indices) > 1 else 1
    if step <= 0 or (np.diff(indices) != step).any():
        raise ValueError("not evenly spaced frames: h5py's virtual layouts take slices")
    return slice(int(indices[0]), int(indices[-1]) + 1, step)


def add_virtual_source(layout: h5py.VirtualLayout, m: VdsMapping) -> None:
    """Plain h5py's way of making ``m`` part of a virtual dataset."""
    if len(m):
        source = h5py.VirtualSource(m.src_file, m.src_dataset, shape=tuple(m.src_shape))
        layout[_even_slice(m.frames)] = source[_even_slice(m.src_frames)]


def plain_write(plan: dict) -> dict:
    arrays = _arrays(plan)
    batch = plan["batch"]
    drained = _write(plan["out"], plan, arrays, batch * READ_GRANULARITY)
    per_send = _write(plan["out"] + ".pub.h5", plan, arrays, batch)
    size = os.path.getsize(plan["out"]) / 2**20
    os.unlink(plan["out"] + ".pub.h5")
    filters: dict[str, int] = {}
    with h5py.File(plan["out"], "r") as f:
        f.visititems(lambda name, obj: filters.__setitem__(
            k := (",".join(obj._filters) or "none") + f" chunks={obj.chunks}", filters.get(k, 0) + 1)
            if isinstance(obj, h5py.Dataset) and not obj.is_virtual else None)
    return {"seconds": drained, "write_pub_batch_s": per_send, "size_mb": size, "filters": filters}


def main(argv: list[str]) -> int:
    if argv[0] == "read":
        out = plain_read(argv[1], argv[2:])
    elif argv[0] == "write":
        with open(argv[1]) as f:
            out = plain_write(json.load(f))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
