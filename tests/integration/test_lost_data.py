"""Data published but not in the file: the scan is never called SUCCEEDED (issue 14, 6-8).

Each case through real Redis, as an unlucky or hostile publisher would make it: a
stream deleted before it was read, a batch whose shape or dtype disagrees with its
stream. The other streams of the scan are written whole.
"""

from __future__ import annotations

import re

import uuid

import numpy as np
from blissdata.redis_engine.store import DataStore

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.blissdata_api import NumericStreamEncoder

DIODE1 = "simulation_diode_sampling_controller:diode1"
DIODE2 = "simulation_diode_sampling_controller:diode2"


def _publish(harness, number: int, tamper) -> tuple:
    """03_ascan, with ``tamper(pub)`` called after the data were sent, before the end."""
    rec = harness.recording("03_ascan", number=number)
    pub = ScanPublisher(harness.ds, rec).create().prepare().start()
    tamper(pub)
    pub.end()
    return rec, harness.state(pub.key)


def _send_others(pub, skip: str) -> None:
    for s in pub.rec.streams:
        if s.is_numeric and s.name != skip:
            pub.streams[s.name].send(s.data)


def _others_whole(state, rec, number, skip):
    with read_file(state.file) as f:
        entry = f[f"{number}.1"]
        for short, stream in (("diode1", DIODE1), ("diode2", DIODE2), ("robx", "axis:robx")):
            if stream != skip:
                assert np.array_equal(entry["measurement"][short][()], rec.stream(stream).data), short
        return entry["writer/status"][()].decode(), [w.decode() for w in np.atleast_1d(entry["writer/warnings"][()])]


def test_a_stream_deleted_before_it_was_read_is_incomplete_and_named(redis_server, tmp_path, caplog):
    # published whole, then one stream's key goes (evicted, deleted) before any writer
    # read it; the writer starting afterwards writes the scan from Redis (recovery)
    session = f"test_lost_{uuid.uuid4().hex[:6]}"
    ds = DataStore(redis_server.url)
    rec = relocate(load_recording("03_ascan"), tmp_path, session=session, number=61)
    key = publish(ds, rec)
    ds._redis.delete(ds.load_scan(key).streams[DIODE2].event_stream.key)
    harness = WriterHarness(redis_server.url, tmp_path, caplog, session=session)
    try:
        state = harness.state(key)
    finally:
        harness.stop()
    assert state.status == "INCOMPLETE", state
    warning = f"{DIODE2}: its data are gone from Redis (stream deleted or evicted): 0 points written"
    assert state.warnings == [warning], state.warnings
    status, notes = _others_whole(state, rec, 61, DIODE2)
    assert (status, notes) == ("INCOMPLETE", [warning])


def test_a_batch_of_another_shape_is_flagged_not_counted_as_points(harness):
    def tamper(pub):
        stream = pub.streams[DIODE1]
        # a 0D stream sent 3 values per announced point: 15 values for 5 points
        stream.event_stream._encoder = NumericStreamEncoder("float64", (3,))
        stream.send(np.arange(15, dtype="float64").reshape(5, 3))
        stream.event_stream._encoder = NumericStreamEncoder("float64", ())
        stream.send(np.float64(5))
        _send_others(pub, DIODE1)

    rec, state = _publish(harness, 62, tamper)
    assert state.status == "INCOMPLETE", state
    warned = [w for w in state.warnings if DIODE1 in w]
    assert len(warned) == 2 and warned[1] == f"{DIODE1}: 0 points written of 6 published", state.warnings
    # the read that met the bad entry holds it alone (5 points) or with the next one (6): either
    # way its 5 points decode to 10 values too many
    found = re.fullmatch(rf"{re.escape(DIODE1)}: (\d+) points decoded where its entries announce (\d+) \(shape "
                         r"or dtype differs from the stream's\): not written from point 0 on", warned[0])
    assert found and int(found[1]) - int(found[2]) == 10, warned[0]
    assert state.written[DIODE1] == 0  # never 15 (or 16) points from a 6-point stream
    _others_whole(state, rec, 62, DIODE1)


def test_a_batch_of_another_dtype_fails_that_stream_only(harness):
    def tamper(pub):
        stream = pub.streams[DIODE1]
        # 3 float32 values (12 bytes) where float64 points are expected
        stream.event_stream._encoder = NumericStreamEncoder("float32", ())
        stream.send(np.arange(3, dtype="float32"))
        stream.event_stream._encoder = NumericStreamEncoder("float64", ())
        stream.send(np.arange(3, 6, dtype="float64"))
        _send_others(pub, DIODE1)

    rec, state = _publish(harness, 63, tamper)
    assert state.status == "INCOMPLETE", state  # not FAILED: one stream's fault stays its own
    assert state.error is None
    warned = [w for w in state.warnings if DIODE1 in w]
    assert warned and "cannot be decoded" in warned[0], state.warnings
    status, notes = _others_whole(state, rec, 63, DIODE1)
    assert status == "INCOMPLETE" and any(DIODE1 in w and "cannot be decoded" in w for w in notes)


def test_a_large_gap_trimmed_from_redis_costs_no_storage_and_reads_as_the_fill_value(harness, redis_server, tmp_path):
    """200,000 points trimmed before any writer read them: the dataset grows over them and
    HDF5's fill value stands for them; no placeholder array is built and written."""
    import logging

    import redis

    from nexus_writer_service.io.files import FileRegistry
    from nexus_writer_service.simulation.recording import scaled
    from nexus_writer_service.transport.scans import ScanSource
    from nexus_writer_service.writer.config import WriterConfig
    from nexus_writer_service.writer.scan import ScanWriter

    harness.stop()  # written by hand, after Redis trimmed it
    npoints, gap = 300_000, 200_000
    rec = scaled(harness.recording("03_ascan", number=64), npoints=npoints)
    pub = ScanPublisher(harness.ds, rec, batch_size=100_000)
    pub.create().prepare().start()
    pub.send_data()
    pub.join()
    redis.Redis.from_url(redis_server.url).xtrim(pub.streams[DIODE1].key, minid=gap, approximate=False)
    pub.end()

    writer = ScanWriter(ScanSource(harness.ds, pub.key), FileRegistry(),
                        WriterConfig(base_path=str(tmp_path), read_timeout=0.2),
                        logging.getLogger("nexus_writer_service"), harness.session)
    state = writer.run()
    assert state.status == "INCOMPLETE", state
    assert state.warnings == [f"{DIODE1}: {gap} points trimmed from Redis before they were saved"], state.warnings
    assert state.written[DIODE1] == npoints
    with read_file(state.file) as f:
        dset = f["64.1/measurement/diode1"]
        assert dset.shape == (npoints,)
        assert np.isnan(dset.fillvalue)  # what a reader gets for the lost points, said by the file
        values = dset[()]
        assert np.isnan(values[:gap]).all()
        assert np.array_equal(values[gap:], rec.stream(DIODE1).data[gap:])  # later points at their index
        # only the chunks holding points that arrived are stored (the gap's are never written)
        chunk = dset.chunks[0]
        assert dset.id.get_storage_size() <= (npoints - gap + chunk) * 8, (dset.id.get_storage_size(), chunk)
        robx = f["64.1/measurement/robx"]
        assert robx.id.get_storage_size() >= npoints * 8  # a whole stream, for comparison
        assert f["64.1/writer/status"][()] == b"INCOMPLETE"


def test_points_lost_before_a_resume_stay_lost(harness, redis_server, tmp_path):
    """Writer A grows diode1 over points trimmed from Redis, then leaves the scan mid-way
    (another writer took the session); writer B resumes the entry from the file: the
    fill values A left are not points, the scan is INCOMPLETE and says how many."""
    import logging
    import threading
    import time

    import redis

    from nexus_writer_service.io.files import FileRegistry
    from nexus_writer_service.transport.scans import ScanSource
    from nexus_writer_service.writer.config import WriterConfig
    from nexus_writer_service.writer.scan import ScanWriter

    harness.stop()  # written by hand
    rec = harness.recording("03_ascan", number=65)
    gap = 3
    pub = ScanPublisher(harness.ds, rec, batch_size=1)  # one Redis entry per point
    pub.create().prepare().start()
    pub.send_data(stop_after=4)
    pub.join()
    redis.Redis.from_url(redis_server.url).xtrim(pub.streams[DIODE1].key, minid=gap, approximate=False)
    config = WriterConfig(base_path=str(tmp_path), read_timeout=0.2)
    log = logging.getLogger("nexus_writer_service")

    taken = threading.Event()
    first = ScanWriter(ScanSource(harness.ds, pub.key), FileRegistry(), config, log, harness.session,
                       superseded=taken)
    thread = threading.Thread(target=first.run)
    thread.start()
    deadline = time.monotonic() + 20
    while getattr(first._file and first._file.arrays.get(DIODE1), "length", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # (the 3 lost points and point 3 are in its dataset)
    time.sleep(0.5)  # flushed
    taken.set()
    thread.join(20)
    with read_file(first.state.file) as f:
        dset = f["65.1/measurement/diode1"]
        assert dset.shape == (4,) and int(dset.attrs["missing_points"]) == gap
        assert f["65.1/writer/status"][()] == b"RUNNING"

    pub.send_data(start_at=4)
    pub.end()
    second = ScanWriter(ScanSource(harness.ds, pub.key), FileRegistry(), config, log, harness.session)
    state = second.run()
    assert state.status == "INCOMPLETE", state
    assert state.warnings == [f"{DIODE1}: {gap} points trimmed from Redis before they were saved"], state.warnings
    with read_file(state.file) as f:
        values = f["65.1/measurement/diode1"][()]
        assert np.isnan(values[:gap]).all()
        assert np.array_equal(values[gap:], rec.stream(DIODE1).data[gap:])
