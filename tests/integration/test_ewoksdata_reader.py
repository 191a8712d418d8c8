"""Online readers of BLISS files read our entries only once they are complete.

ewoksdata (``ewoksdata.data.bliss``) and blissdata's dynamic HDF5 reader take a file whose
root ``creator`` or ``publisher`` is ``bliss`` for a BLISS file, and then wait for an
entry's ``end_time`` ("last dataset written") before reading it. Our files carry BLISS's
``publisher`` from scan_info and write ``end_time`` last: a reader started while the scan
is being written waits, then gets every point.

Real Redis, the scan published point by point with the replayer, ``NexusSessionWriter``
as its own process (as at a beamline), the readers in threads of this process.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import h5py
import numpy as np
import pytest

bliss_reader = pytest.importorskip("ewoksdata.data.bliss")

from nexus_writer_service import __version__  # noqa: E402
from nexus_writer_service.simulation.recording import load_recording, relocate  # noqa: E402
from nexus_writer_service.simulation.replay import ScanPublisher  # noqa: E402
from conftest import start_session_writer, wait_for as _wait


def _points(path: str, dataset: str) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return len(f[dataset]) if dataset in f else 0
    except OSError:  # not created yet, or caught between two flushes
        return 0


class Reader(threading.Thread):
    def __init__(self, read):
        super().__init__(daemon=True)
        self.read, self.result, self.error, self.done_at = read, None, None, None

    def run(self) -> None:
        try:
            self.result = self.read()
        except BaseException as exc:  # shown by the test
            self.error = exc
        self.done_at = time.monotonic()


def test_ewoksdata_waits_for_end_time_then_reads_every_point(redis_server, tmp_path):
    from blissdata.redis_engine.store import DataStore

    session = f"ewoks_{uuid.uuid4().hex[:8]}"
    writer = start_session_writer(redis_server.url, session, tmp_path)
    try:
        rec = relocate(load_recording("03_ascan"), tmp_path, session=session)
        assert rec.info_final["publisher"] == "bliss" and rec.info_final["publisher_version"] == "2.2.1"
        expected = {s.name: np.asarray(s.data) for s in rec.streams}
        entry = f"{rec.number}.1"
        path = rec.identity["path"]
        diode = f"/{entry}/measurement/diode1"

        pub = ScanPublisher(DataStore(redis_server.url), rec, batch_size=1).create().prepare().start()
        pub.send_data(stop_after=3)
        assert _wait(lambda: _points(path, diode) == 3), "the writer did not flush the first 3 points"
        with h5py.File(path, "r", locking=False) as f:
            root = dict(f.attrs)
            assert "end_time" not in f[entry] and "measurement" in f[entry]
        assert (root["publisher"], root["publisher_version"]) == ("bliss", "2.2.1")
        assert (root["creator"], root["creator_version"]) == ("nexus_writer_service", __version__)
        assert root["file_name"] == os.path.abspath(path)

        readers = {
            "get_data": Reader(lambda: bliss_reader.get_data(f"{path}::{diode}", retry_timeout=60,
                                                             retry_period=0.1)),
            "iter_bliss_scan_data_from_hdf5": Reader(lambda: list(bliss_reader.iter_bliss_scan_data_from_hdf5(
                path, rec.number, counter_names=["diode1", "robx"], retry_timeout=60, retry_period=0.1))),
        }
        for r in readers.values():
            r.start()
        time.sleep(2.0)  # four flush periods of the writer: the entry stays incomplete meanwhile
        waiting = {name for name, r in readers.items() if r.is_alive()}
        assert waiting == set(readers), {n: (r.result, r.error) for n, r in readers.items()}

        ended = time.monotonic()
        pub.send_data(start_at=3)
        pub.end()
        for r in readers.values():
            r.join(60)
        for name, r in readers.items():
            assert r.error is None, f"{name}: {r.error!r}"
            assert r.done_at >= ended
        diode1 = expected["simulation_diode_sampling_controller:diode1"]
        robx = expected["axis:robx"]
        assert len(diode1) == 6
        np.testing.assert_array_equal(readers["get_data"].result, diode1)
        points = readers["iter_bliss_scan_data_from_hdf5"].result
        assert len(points) == 6
        np.testing.assert_array_equal([p["diode1"] for p in points], diode1)
        np.testing.assert_array_equal([p["robx"] for p in points], robx)
        with h5py.File(path, "r", locking=False) as f:
            # end_time is the entry's last link (creation order): nothing comes after it
            assert list(f[entry])[-1] == "end_time"
            assert f[entry]["writer/status"][()].decode() == "SUCCEEDED"
    finally:
        writer.terminate()
        writer.communicate(timeout=30)
