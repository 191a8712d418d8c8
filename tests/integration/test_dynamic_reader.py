"""blissdata's dynamic HDF5 reader (``blissdata.h5api``, under ewoksdata) reads an entry as
started once its ``writer/status`` is RUNNING, SUCCEEDED or FAILED, and as finished once it
has ``end_time``: our entry being written says RUNNING, so the points already in the file are
read while the scan runs (with WRITING the reader would wait for the end).

The writer runs as its own process (as at a beamline): HDF5 refuses a second open of a file
with other locking flags in the process that writes it."""

from __future__ import annotations

import time
import uuid

import h5py
import numpy as np
import pytest

from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.blissdata_api import DataStore
from conftest import start_session_writer, wait_for as _wait

dynamic_hdf5 = pytest.importorskip("blissdata.h5api.dynamic_hdf5")

DIODE1 = "simulation_diode_sampling_controller:diode1"


def _read(path: str, fn, default=None):
    try:
        with h5py.File(path, "r", locking=False) as f:
            return fn(f)
    except (OSError, KeyError):  # not created yet, or caught between two flushes
        return default


def test_blissdata_reads_the_points_of_an_entry_being_written(redis_server, tmp_path):
    session = f"dynamic_{uuid.uuid4().hex[:8]}"
    writer = start_session_writer(redis_server.url, session, tmp_path)
    try:
        rec = relocate(load_recording("03_ascan"), tmp_path, session=session)
        entry, path = f"{rec.number}.1", rec.identity["path"]
        published = np.asarray(rec.stream(DIODE1).data)
        pub = ScanPublisher(DataStore(redis_server.url), rec, batch_size=1).create().prepare().start()
        pub.send_data(stop_after=3)
        assert _wait(lambda: _read(path, lambda f: len(f[f"{entry}/measurement/diode1"]), 0) == 3)
        status, ended = _read(path, lambda f: (f[f"{entry}/writer/status"][()], "end_time" in f[entry]))
        assert (status, ended) == (b"RUNNING", False)
        with dynamic_hdf5.File(path, retry_timeout=5, retry_period=0.1, locking=False) as root:
            # an entry's attributes are all there once it is started (else: wait for end_time)
            t0 = time.monotonic()
            attrs = sorted(root[entry].attrs)
            listed_in = time.monotonic() - t0
            first = np.asarray(root[entry]["measurement"]["diode1"][:3])
        assert attrs == ["NX_class"] and listed_in < 2.0, (attrs, listed_in)
        np.testing.assert_array_equal(first, published[:3])
        pub.send_data(start_at=3)
        pub.end()
        assert _wait(lambda: _read(path, lambda f: "end_time" in f[entry]))
        assert _read(path, lambda f: f[f"{entry}/writer/status"][()]) == b"SUCCEEDED"
        with dynamic_hdf5.File(path, retry_timeout=10, retry_period=0.1, locking=False) as root:
            np.testing.assert_array_equal(np.asarray(root[entry]["measurement"]["diode1"][()]), published)
    finally:
        writer.terminate()
        writer.communicate(timeout=30)
