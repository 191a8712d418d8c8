"""Data published but not in the file: the scan is never called SUCCEEDED (issue 14, 6-8).

Each case through real Redis, as an unlucky or hostile publisher would make it: a
stream deleted before it was read, a batch whose shape or dtype disagrees with its
stream. The other streams of the scan are written whole.
"""

from __future__ import annotations

import numpy as np
from blissdata.streams.encoding.numeric import NumericStreamEncoder

import uuid

from blissdata.redis_engine.store import DataStore

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher, publish

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
    assert any(DIODE2 in w and "gone from Redis" in w for w in state.warnings), state.warnings
    status, notes = _others_whole(state, rec, 61, DIODE2)
    assert status == "INCOMPLETE" and any(DIODE2 in w for w in notes)


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
    assert warned and "decoded" in warned[0], state.warnings
    assert state.written[DIODE1] < 15  # never 15 points from a 6-point stream
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
