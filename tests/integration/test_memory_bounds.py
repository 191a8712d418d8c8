"""Memory bounded whatever the publisher's batches and the session's history (issue 14 item 12).

Checked on the bounded structures themselves, through real Redis: the bytes one
Redis read returns (``transport.scans.BoundedCursorGroup``), the threads a burst
of scans gets (``writer.scheduler.ScanPool``), what the session keeps of finished
scans. Peak RSS is measured by the benchmarks (S2 batch variants).
"""

from __future__ import annotations

import gc
import threading
import time

import h5py
import numpy as np
import pytest
from nexus_writer_service.transport.blissdata_api import EndOfStream

from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.scans import BoundedCursorGroup, ScanSource
from nexus_writer_service.writer.scan import ScanWriter


def _mca_scan(tmp_path, session: str, npoints: int, nchan: int):
    """The recorded MCA loopscan with ``nchan``-channel spectra and ``npoints`` points of
    distinct values in every stream."""
    rec = relocate(load_recording("10_loopscan_mca"), tmp_path, session=session, number=77)
    for k, s in enumerate(rec.streams):
        if not s.is_numeric:
            continue
        shape = list(s.encoding["shape"])
        if len(shape) == 1:
            shape = [nchan]
            s.encoding = dict(s.encoding, shape=shape)
            s.info = dict(s.info, shape=shape)
        dtype = np.dtype(s.encoding["dtype_str"])
        size = int(np.prod(shape or [1]))
        s.data = ((np.arange(npoints * size) + k * 7919) % 60000).astype(dtype).reshape([npoints] + shape)
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        if "npoints" in info:
            info["npoints"] = npoints
    return rec


def _read_all(source: ScanSource, names: list[str]) -> tuple[dict, list[int], list]:
    """Every point of these streams, the bytes each read returned and what it asked Redis."""
    got = {n: [] for n in names}
    sizes, requests = [], []
    while True:
        try:
            batches = source.read(timeout=0.2)
        except EndOfStream:
            break
        requests.append(source._cursors.requests)
        sizes.append(sum(b.data.nbytes for b in batches.values() if b.data is not None))
        for name, b in batches.items():
            got[name].append(b.data)
    return {n: np.concatenate(v) for n, v in got.items() if v}, sizes, requests


@pytest.mark.parametrize("batch", [1000, 50])
def test_a_read_returns_at_most_the_byte_budget_whatever_the_batch(redis_server, data_store, tmp_path,
                                                                   monkeypatch, batch):
    """4 spectra of 1024 uint32 sent ``batch`` points at a time: one entry is 4 MB at
    1000 points per send. With a 6 MB budget no read returns more than 6 MB (before:
    the first read asked 8 entries of every stream, 128 MB), and every point arrives."""
    budget = 6 << 20
    monkeypatch.setattr(BoundedCursorGroup, "READ_BYTES", budget)
    rec = _mca_scan(tmp_path, "mem_bounds", 2000, 1024)
    key = publish(data_store, rec, batch_size=batch)
    source = ScanSource(data_store, key)
    source.load()
    names = [s.name for s in rec.streams if s.is_numeric]
    source.follow(names)
    data, sizes, requests = _read_all(source, names)
    entry = 4 * 1024 * batch  # one spectrum entry
    assert max(sizes) <= max(budget, entry), (max(sizes), sizes[:5])
    assert sizes[0] <= max(budget, entry)
    for s in rec.streams:
        if s.is_numeric:
            assert np.array_equal(data[s.name], s.data), s.name
    if batch == 50:  # small entries: many per read, not one read per entry
        assert len(sizes) < 2000 * 4 * 1024 * 4 / budget * 3, len(sizes)


def test_first_read_asks_one_entry_of_a_stream_of_unknown_large_entries(data_store, tmp_path):
    rec = _mca_scan(tmp_path, "mem_first", 200, 1024)
    key = publish(data_store, rec, batch_size=100)
    source = ScanSource(data_store, key)
    source.load()
    spectra = [s.name for s in rec.streams if s.is_numeric and len(s.encoding["shape"]) == 1]
    source.follow(spectra)
    source.read(timeout=0.2)
    (asked, count), = source._cursors.requests[:1]
    assert count == 1 and len(asked) == 1, source._cursors.requests
    source.close()


def test_a_burst_of_created_scans_gets_a_bounded_number_of_threads(make_harness):
    """200 scans created within a second (never prepared): at most ``max_scan_threads``
    scan threads, the rest queued PENDING (a thread each before: 503 for 500 scans)."""
    harness = make_harness(max_scan_threads=16, prepare_timeout=600)
    harness.ds._redis.connection_pool.max_connections = 10_000  # a sink per stream published
    pubs = [ScanPublisher(harness.ds, harness.recording("13_timescan", number=4000 + i)).create()
            for i in range(200)]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(harness.writer.scans) < 200:
            time.sleep(0.05)
        assert len(harness.writer.scans) == 200
        threads = [t for t in threading.enumerate() if t.name.startswith(f"scan-{harness.session}-")]
        assert len(threads) == 16, len(threads)
        assert harness.writer._pool.queued == 200 - 16
        assert all(s.status == "PENDING" for s in harness.writer.scans.values())
    finally:
        for p in pubs:
            p.abandon()


def test_finished_scans_are_kept_as_their_small_state_only(make_harness, monkeypatch):
    """No ScanWriter (scan_info, plan, kinds, cursors) outlives its scan; the session
    keeps the last KEEP_STATES states (1000 kept writers with a large scan_info were
    +1.8 MB each)."""
    from nexus_writer_service.writer.session import SessionWriter

    monkeypatch.setattr(SessionWriter, "KEEP_STATES", 5)
    harness = make_harness()
    keys = [harness.publish(harness.recording("13_timescan", number=n)) for n in range(4500, 4508)]
    states = harness.states(keys[-5:])
    assert all(s.status == "SUCCEEDED" for s in states.values()), states
    assert list(harness.writer.scans) == keys[-5:]
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, ScanWriter)
             and o.state.key in keys]
    assert alive == [], [w.state for w in alive]


def test_thousands_of_channels_hold_a_bounded_number_of_hdf5_objects(make_harness, monkeypatch):
    """2000 counters in one scan: at no creation or append are more than ``OPEN_SLOTS`` growing datasets
    open in the file (HDF5 keeps ~20 kB per open dataset: all 2005 were open before), and
    every point of every channel is in the file with its value (the datasets closed between
    appends are reopened where the entry was moved after its staging)."""
    from nexus_writer_service.io import arrays
    from nexus_writer_service.simulation.recording import scaled

    seen = {"open": 0, "appends": 0}
    append, create = arrays.GrowingDataset.append, arrays.GrowingDataset.create

    def look(array) -> None:  # what HDF5 holds in the file now
        fid = h5py.h5i.get_file_id(array._anchor)
        seen["open"] = max(seen["open"], h5py.h5f.get_obj_count(fid, h5py.h5f.OBJ_DATASET))

    def appended(self, batch):  # spies on the real calls
        n = append(self, batch)
        look(self)
        seen["appends"] += 1
        return n

    def created(cls, *args, **kwargs):
        array = create(*args, **kwargs)
        look(array)
        return array

    monkeypatch.setattr(arrays.GrowingDataset, "append", appended)
    monkeypatch.setattr(arrays.GrowingDataset, "create", classmethod(created))
    gc.collect()
    before = arrays.OPEN_SLOTS.used  # what other tests of this process still hold
    harness = make_harness()
    harness.ds._redis.connection_pool.max_connections = 10_000  # a sink per stream published
    rec = scaled(harness.recording("03_ascan", number=4600), npoints=30, extra_counters=2000)
    key = harness.publish(rec, batch_size=10)
    state = harness.state(key, timeout=120)
    assert state.status == "SUCCEEDED", (state.status, state.error, state.warnings[:3])
    streams = [s for s in rec.streams if s.is_numeric]
    assert len(streams) > 2000 and seen["appends"] >= len(streams)
    assert seen["open"] <= arrays.OPEN_SLOTS.limit + 2, seen
    # the scan gave its slots back when it ended (not whenever garbage collection runs)
    deadline = time.monotonic() + 5
    while arrays.OPEN_SLOTS.used > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert arrays.OPEN_SLOTS.used <= before
    with h5py.File(state.file, "r", locking=False) as f:
        instrument = f[f"{rec.number}.1/instrument"]
        for i in range(2000):
            np.testing.assert_array_equal(instrument[f"c{i:03d}/data"][()], rec.streams[-2000 + i].data)
