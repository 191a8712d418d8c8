"""The physical bound: what a writer cannot beat on this machine.

Two child processes (so that neither shares an interpreter with the benchmark):

``read``: a plain read of the same Redis streams with blissdata (one ``CursorGroup``
over every data stream of each scan, ``get_data()`` of each view, nothing else).
Runs while the writer is paused, right after publishing.

``write``: plain h5py appending the same arrays to chunked datasets, created with the
same chunk shape, filters (e.g. bitshuffle-LZ4 through hdf5plugin) and fill value as
the dataset OUR writer made for that channel (read back from its file), in the
batches a draining writer receives: blissdata's ``CursorGroup.read`` returns at most
100 sends per stream, so ``100 x`` the publisher's batch. The same run also times
appends at the publisher's batch size (``write_pub_batch_s``, for reference). S5's
bound is the VDS over the lima files, created in one call, plus the ROI counter.
Data are generated before the clock starts; the clock stops after ``close()``.

The bound is read + write (a writer cannot write a point before reading it); both
parts are reported.

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

#: blissdata's CursorGroup.read asks Redis for at most this many entries per stream
READ_GRANULARITY = 100


def plain_read(url: str, keys: list[str]) -> dict:
    from blissdata.exceptions import EndOfStream
    from blissdata.redis_engine.store import DataStore
    from blissdata.streams import CursorGroup
    from blissdata.streams.default import Stream

    ds = DataStore(url)
    t0 = time.perf_counter()
    npoints = 0
    for key in keys:
        scan = ds.load_scan(key)
        # raw event streams: neither a lima server nor the fallback file is asked
        streams = [Stream(s.event_stream) for s in scan.streams.values()
                   if s.kind == "array" or s.plugin == "lima"]
        group = CursorGroup(streams)
        while True:
            try:
                views = group.read(block=True, timeout=0.1)
            except EndOfStream:
                break
            for view in views.values():
                npoints += len(view.get_data())
    return {"seconds": time.perf_counter() - t0, "points": npoints}


def _creation_kwargs(ref: h5py.Dataset | None, dtype, point_shape) -> dict:
    """chunks/filters/fill value of our writer's dataset for the channel."""
    if ref is None:  # no reference: contiguous-in-chunks, unfiltered
        return {"chunks": True}
    kw = {"chunks": ref.chunks, "fillvalue": ref.fillvalue}
    filters = dict(ref._filters)
    if "gzip" in filters:
        kw.update(compression="gzip", compression_opts=filters.pop("gzip"))
    if "lzf" in filters:
        filters.pop("lzf")
        kw.update(compression="lzf")
    if filters.pop("shuffle", None) is not None:
        kw["shuffle"] = True
    for fid, opts in filters.items():  # plugin filters (bitshuffle: 32008)
        import hdf5plugin  # noqa: F401  registers them
        kw.update(compression=int(fid), compression_opts=tuple(opts))
    return kw


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
    kwargs = []
    for a in arrays:
        rd = ref.get(a["ref"]) if (ref is not None and a.get("ref")) else None
        kwargs.append(_creation_kwargs(rd if isinstance(rd, h5py.Dataset) else None,
                                       a["dtype"], a["point_shape"]))
    if ref is not None:
        ref.close()
    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        by_entry: dict[str, list[int]] = {}
        for i, a in enumerate(arrays):
            by_entry.setdefault(a["entry"], []).append(i)
        for entry, idx in by_entry.items():  # scans one after another, as S3 publishes them
            grp = f.create_group(entry)
            dsets = []
            for i in idx:
                a = arrays[i]
                shape = tuple(a["point_shape"])
                dsets.append(grp.create_dataset(
                    f"d{i}", shape=(0,) + shape, maxshape=(None,) + shape, dtype=a["dtype"], **kwargs[i]))
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
    return time.perf_counter() - t0


def plain_write(plan: dict) -> dict:
    arrays = _arrays(plan)
    batch = plan["batch"]
    drained = _write(plan["out"], plan, arrays, batch * READ_GRANULARITY)
    per_send = _write(plan["out"] + ".pub.h5", plan, arrays, batch)
    size = os.path.getsize(plan["out"]) / 2**20
    os.unlink(plan["out"] + ".pub.h5")
    return {"seconds": drained, "write_pub_batch_s": per_send, "size_mb": size}


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
