"""Data trimmed from Redis before the writer read it: said, never hidden."""

from __future__ import annotations

import logging

import numpy as np
import redis

from conftest import read_file
from nexus_writer_service.io.files import FileRegistry
from nexus_writer_service.simulation.recording import scaled
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.scans import ScanSource
from nexus_writer_service.writer.config import WriterConfig
from nexus_writer_service.writer.scan import ScanWriter

DIODE1 = "simulation_diode_sampling_controller:diode1"


def test_points_trimmed_from_redis_are_marked_and_the_rest_kept(harness, redis_server, tmp_path):
    """A writer that lags finds the first points gone (BLISS's memory tracker trims streams)."""
    harness.stop()  # write this scan by hand, after Redis trimmed it
    rec = scaled(harness.recording("03_ascan"), npoints=20)
    pub = ScanPublisher(harness.ds, rec, batch_size=1)
    pub.create().prepare().start()
    pub.send_data()
    for stream in pub.streams.values():
        stream.join()
    r = redis.Redis.from_url(redis_server.url)
    diode_key = pub.streams[DIODE1].key
    r.xtrim(diode_key, minid=8, approximate=False)  # points 0..7 of diode1 are gone
    pub.end()

    writer = ScanWriter(ScanSource(harness.ds, pub.key), FileRegistry(),
                        WriterConfig(base_path=str(tmp_path), read_timeout=0.2),
                        logging.getLogger("nexus_writer_service"), harness.session)
    state = writer.run()
    assert state.status == "INCOMPLETE"
    warning = f"{DIODE1}: 8 points trimmed from Redis before they were saved"
    assert state.warnings == [warning]
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        diode = entry["measurement/diode1"][()]
        expected = rec.stream(DIODE1).data
        assert diode.shape == (20,)
        assert np.isnan(diode[:8]).all()  # fill value where data was lost
        assert np.array_equal(diode[8:], expected[8:])  # later points at their index
        assert np.array_equal(entry["measurement/robx"][()], rec.stream("axis:robx").data)
        assert entry["writer/status"][()] == b"INCOMPLETE"
        assert list(entry["writer/warnings"][()]) == [warning.encode()]
    assert "points trimmed from Redis" in harness.caplog.text


class _RacedSource(ScanSource):
    """What blissdata's load_scan returns when the publisher prepares in between:
    a PREPARED scan whose stream list is still empty."""

    def load(self, timeout: float = 10.0, period: float = 0.02) -> None:
        self.scan = self.ds.load_scan(self.key)
        self.scan._model.data_streams = {}
        self.scan._streams = {}


def _published(harness, before_data=lambda pub: None):
    """An ascan published whole while no writer listens; ``before_data`` runs once it started."""
    harness.stop()
    rec = harness.recording("03_ascan")
    pub = ScanPublisher(harness.ds, rec)
    pub.create().prepare().start()
    before_data(pub)
    pub.send_data()
    pub.end()
    return rec, pub


def _write_alone(harness, source, tmp_path):
    writer = ScanWriter(source, FileRegistry(), WriterConfig(base_path=str(tmp_path), read_timeout=0.2),
                        logging.getLogger("nexus_writer_service"), harness.session)
    return writer.run()


def test_a_scan_read_during_the_prepare_race_is_never_called_complete(harness, tmp_path):
    rec, pub = _published(harness)
    state = _write_alone(harness, _RacedSource(harness.ds, pub.key), tmp_path)
    assert state.status == "INCOMPLETE"  # ESRF's writer says SUCCEEDED here, with an empty entry
    assert state.warnings == ["5 stream(s) published but not written: axis:robx, "
                              "simulation_diode_sampling_controller:diode1, "
                              "simulation_diode_sampling_controller:diode2, timer:elapsed_time, timer:epoch"], \
        state.warnings


class _StaleOnceStore:
    """A DataStore whose first load of a closed scan comes with the document of before
    the close: what ``load_scan`` returns when the scan closes between its two reads."""

    def __init__(self, ds, stale_info: dict):
        self._ds, self._stale, self.loads = ds, stale_info, 0

    def load_scan(self, key):
        scan = self._ds.load_scan(key)
        self.loads += 1
        if self.loads == 1:
            scan._model.info = dict(self._stale)
        return scan

    def __getattr__(self, name):
        return getattr(self._ds, name)


def test_a_scan_read_during_the_close_race_gets_its_end_metadata(harness, tmp_path):
    stale = {}
    rec, pub = _published(harness, lambda pub: stale.update(harness.ds.load_scan(pub.key).info))
    assert "end_reason" not in stale
    store = _StaleOnceStore(harness.ds, stale)
    state = _write_alone(harness, ScanSource(store, pub.key), tmp_path)
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert entry["end_reason"][()].decode() == rec.info_final["end_reason"]
        assert "positioners_end" in entry["instrument"]


def test_a_closed_scan_is_loaded_once_when_its_document_is_final(harness, tmp_path):
    # the second load above costs ~1 ms (redis-om): only a document that changed gets one
    rec, pub = _published(harness)
    store = _StaleOnceStore(harness.ds, dict(harness.ds.load_scan(pub.key).info))  # "stale" = final
    state = _write_alone(harness, ScanSource(store, pub.key), tmp_path)
    assert state.status == "SUCCEEDED", state
    assert store.loads == 1
    with read_file(state.file) as f:
        assert f[f"{rec.number}.1/end_reason"][()].decode() == rec.info_final["end_reason"]
