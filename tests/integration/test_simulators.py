"""The detector simulators (Lima2, MOSCA, JSON streams): files as the detectors write
them, Redis content as BLISS and the blissdata plugins publish it (through a real Redis)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid

import h5py
import numpy as np
import pytest
from blissdata.exceptions import MissingPluginException

from nexus_writer_service.simulation import lima2 as lima2_sim
from nexus_writer_service.simulation import mosca as mosca_sim
from nexus_writer_service.simulation.json_stream import add_json
from nexus_writer_service.simulation.lima2 import Lima2Detector, add_lima2
from nexus_writer_service.simulation.mosca import MoscaDetector, add_mosca
from nexus_writer_service.simulation.plugins import hidden_plugins, installed_plugins, raw_events
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.blissdata_api import BrokenPluginStream, MissingPluginStream, ScanState, Stream

NPOINTS = 6  # 03_ascan


def _scan(tmp_path, fixture="03_ascan"):
    return relocate(load_recording(fixture), tmp_path, session=f"sim_{uuid.uuid4().hex[:8]}")


def _load(data_store, key):
    scan = data_store.load_scan(key)
    while scan.state < ScanState.CLOSED:
        scan.update(timeout=1)
    return scan


def _redis_json(obj):
    return json.loads(json.dumps(obj))


# --- Lima2 ------------------------------------------------------------------------------


def test_lima2_receivers_round_robin_and_master_after_acquisition(tmp_path, data_store):
    det = Lima2Detector(receivers=2, frames_per_file=2)
    folder = str(tmp_path / "scan0024")
    rec = add_lima2(_scan(tmp_path), det, folder)
    frames = rec.lima_frames[det.channel]
    assert frames.shape == (NPOINTS, 8, 10) and rec.saved_points[det.channel] == NPOINTS
    # receiver r holds frames r, r+2, r+4 ... in its own files, 2 per file
    names = sorted(os.listdir(folder))
    assert names == [f"lima2_simulator_frame_{r}_{i:05d}.h5" for r in (0, 1) for i in (0, 1)]
    for rank in (0, 1):
        mine = np.concatenate([h5py.File(det.receiver_file(folder, rank, i), "r")[det.data_path][()]
                               for i in (0, 1)])
        assert np.array_equal(mine, frames[rank::2])
    with h5py.File(det.receiver_file(folder, 1, 1), "r") as f:
        assert f[det.data_path].shape == (1, 8, 10)  # frame 5 only
        assert f[det.data_path].dtype == np.uint16
        assert f[f"entry_0000/instrument/{det.name}"].attrs["NX_class"] == "NXdetector"

    pub = ScanPublisher(data_store, rec, batch_size=2).create().prepare().start()
    master = det.master_file(folder)
    with _publishing(pub):
        pub.send_data()
        assert not os.path.exists(master)  # the conductor writes it once the acquisition is over
        pub.end()
    assert os.path.exists(master)
    with h5py.File(master, "r") as f:
        data = f[det.data_path]
        assert data.is_virtual and data.shape == (NPOINTS, 8, 10)  # dim_3d_or_4d: 1 channel -> 3-D
        assert np.array_equal(data[()], frames)
        sources = data.virtual_sources()
        assert {s.file_name for s in sources} == set(names)  # bare names: beside the master
        assert all(s.dset_name == det.data_path for s in sources)
        assert sorted(s.vspace.get_select_npoints() // 80 for s in sources) == [1, 1, 2, 2]
        assert data.attrs["interpretation"] == "image"
        # hard links, not soft ones
        entry = f["entry_0000"]
        assert entry.get("measurement/data", getlink=True).__class__ is h5py.HardLink
        assert entry["measurement/data"].id == data.id == entry[f"instrument/{det.name}/plot/data"].id
        assert entry[f"instrument/{det.name}/plot"].attrs["signal"] == "data"
        assert f.attrs["creator"] == "Lima2.Conductor" and f.attrs["default"] == "entry_0000"

    scan = _load(data_store, pub.key)
    info = scan.streams[det.channel].info
    assert info["master_file"] == [master, "entry_0000/instrument/lima2_simulator/data"]
    assert not info["master_file"][1].startswith("/")


def test_lima2_dim_4d_keeps_the_channel_axis(tmp_path):
    det = Lima2Detector(receivers=3, frames_per_file=1, nb_dimensions="dim_4d", compression="none")
    folder = str(tmp_path / "scan")
    rec = add_lima2(_scan(tmp_path), det, folder)
    for callback in rec.before_close:
        callback()
    assert rec.stream(det.channel).info["shape"] == [1, 8, 10]
    with h5py.File(det.receiver_file(folder, 2, 1), "r") as f:
        assert np.array_equal(f[det.data_path][()], rec.lima_frames[det.channel][5:6].reshape(1, 1, 8, 10))
    with h5py.File(det.master_file(folder), "r") as f:
        assert f[det.data_path].shape == (NPOINTS, 1, 8, 10)
        assert np.array_equal(f[det.data_path][()][:, 0], rec.lima_frames[det.channel])


def test_lima2_progress_events_in_redis_and_a_detector_that_stops_early(tmp_path, data_store):
    det = Lima2Detector(receivers=2, frames_per_file=2)
    folder = str(tmp_path / "scan")
    rec = add_lima2(_scan(tmp_path), det, folder, saved=3)
    assert len(rec.lima_frames[det.channel]) == 3 and rec.saved_points[det.channel] == 3
    assert sorted(os.listdir(folder)) == ["lima2_simulator_frame_0_00000.h5", "lima2_simulator_frame_1_00000.h5"]
    pub = ScanPublisher(data_store, rec, batch_size=2).create().prepare().start()
    with _publishing(pub):
        pub.send_data(stop_after=2)  # points 0 and 1 only: the progress so far, nothing ahead
        early = raw_events(_load_now(pub.join().key, data_store).streams[det.channel])
        assert list(early[:]) == [0, 1]
        pub.send_data(start_at=2)
        pub.end()
    stream = _load(data_store, pub.key).streams[det.channel]
    raw = raw_events(stream)
    counts = raw[:]
    assert counts.dtype == np.uint32 and raw.is_sealed()
    assert list(counts) == list(rec.stream(det.channel).data)
    assert counts[-1] == counts[-2] == 3 and np.all(np.diff(counts.astype(int)) >= 0)
    assert len(counts) > len(set(counts.tolist()))  # ticks that saw no new frame repeat the count
    with h5py.File(det.master_file(folder), "r") as f:
        assert np.array_equal(f[det.data_path][()], rec.lima_frames[det.channel])


def _load_now(key, data_store):
    return data_store.load_scan(key)


@contextlib.contextmanager
def _publishing(pub):
    """A test that fails midway leaves no publisher threads running (they are not daemons)."""
    try:
        yield pub
    except BaseException:
        pub.abandon()
        raise


def test_lima2_sparse_frames(tmp_path, data_store):
    det = Lima2Detector(receivers=1, sparse=True, frames_per_file=4, dtype="float32")
    folder = str(tmp_path / "scan")
    rec = add_lima2(_scan(tmp_path), det, folder)
    dense = rec.lima_frames[det.channel].reshape(NPOINTS, -1)
    assert det.channel == "lima2_simulator:sparse_frame"
    assert sorted(os.listdir(folder)) == ["lima2_simulator_sparse_frame_0_00000.h5",
                                          "lima2_simulator_sparse_frame_0_00001.h5"]
    got = []
    for i in (0, 1):
        with h5py.File(det.receiver_file(folder, 0, i), "r") as f:
            group = f[det.data_path]
            assert group["index"].dtype == np.uint32 and group["frame_ptr"].dtype == np.uint64
            ptr, idx, val = group["frame_ptr"][()], group["index"][()], group["intensity"][()]
            assert ptr[0] == 0 and ptr[-1] == len(idx) == len(val)
            for k in range(len(ptr) - 1):
                frame = np.zeros(dense.shape[1], dtype=np.float32)
                frame[idx[ptr[k]:ptr[k + 1]]] = val[ptr[k]:ptr[k + 1]]
                got.append(frame)
    assert np.array_equal(np.stack(got), dense)
    key = publish(data_store, rec)
    with h5py.File(det.master_file(folder), "r") as f:
        group = f[det.data_path]
        ptr = group["frame_ptr"][()]
        assert len(ptr) == NPOINTS + 1 and group["index"].is_virtual and group["intensity"].is_virtual
        for k in range(NPOINTS):
            frame = np.zeros(dense.shape[1], dtype=np.float32)
            frame[group["index"][ptr[k]:ptr[k + 1]]] = group["intensity"][ptr[k]:ptr[k + 1]]
            assert np.array_equal(frame, dense[k])
        assert f["entry_0000/measurement/data"].id == group.id
    assert _load(data_store, key).streams[det.channel].info["dtype"] == "float32"
    with pytest.raises(ValueError):
        Lima2Detector(receivers=2, sparse=True)


def test_lima2_scan_info_as_bliss_2_4_records_it(tmp_path):
    det = Lima2Detector()
    rec = add_lima2(_scan(tmp_path), det, str(tmp_path / "scan"))
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        channel = info["channels"][det.channel]
        assert channel["dim"] == 3 and channel["display_name"] == "frame" and "no_saving" not in channel
        device = info["devices"][channel["device"]]
        assert device["type"] == "lima2" and det.channel in device["channels"]
        chain = next(iter(info["acquisition_chain"].values()))
        assert channel["device"] in chain["devices"]
        # shape (0, 0, 0) when the chain is described: not a scalar, spectrum nor image
        assert all(det.channel not in chain.get(k, []) for k in ("scalars", "spectra", "images"))
    assert rec.info_final["devices"]["3:lima2_simulator"]["metadata"]["proc_params"]["saving"]["nb_frames_per_file"] == 2
    unsaved = add_lima2(_scan(tmp_path), Lima2Detector(saving=False), str(tmp_path / "none"))
    assert not os.path.exists(tmp_path / "none") and not unsaved.before_close
    assert unsaved.stream(det.channel).info["master_file"] is None
    assert unsaved.info_prepared["channels"][det.channel]["no_saving"] is True
    assert unsaved.saved_points[det.channel] == 0


# --- MOSCA ------------------------------------------------------------------------------


def test_mosca_files_as_mosca_writes_them(tmp_path):
    det = MoscaDetector(detectors=(0, 3), channels=16, points_per_file=4)
    folder = str(tmp_path / "scan0024")
    rec = add_mosca(_scan(tmp_path), det, folder)
    assert sorted(os.listdir(folder)) == ["mosca_simulator_spectra_0000.h5", "mosca_simulator_spectra_0001.h5"]
    for alias in (0, 3):
        name = f"mosca_simulator:spectrum:spec_det{alias:02d}"
        expected = rec.mosca_spectra[name]
        assert expected.shape == (NPOINTS, 16) and rec.saved_points[name] == NPOINTS
        parts = []
        for i in (0, 1):
            with h5py.File(det.spectra_file(folder, i), "r") as f:
                dset = f[f"/entry_0000/mosca_simulator/data/spectra_{alias:02d}"]
                assert dset.dtype == np.uint32 and dset.maxshape == (4, 16) and dset.chunks == (1, 16)
                parts.append(dset[()])
        assert [len(p) for p in parts] == [4, 2]
        assert np.array_equal(np.concatenate(parts), expected)
    assert not np.array_equal(rec.mosca_spectra["mosca_simulator:spectrum:spec_det00"],
                              rec.mosca_spectra["mosca_simulator:spectrum:spec_det03"])


def test_mosca_streams_in_redis(tmp_path, data_store):
    det = MoscaDetector(detectors=2, points_per_file=4)
    folder = str(tmp_path / "scan")
    rec = add_mosca(_scan(tmp_path), det, folder)
    key = publish(data_store, rec, batch_size=2)
    scan = _load(data_store, key)
    name = "mosca_simulator:spectrum:spec_det01"
    stream = scan.streams[name]
    info = stream.info
    assert info["plugin"] == "mosca" and info["detector"] == 1 and info["data_index"] == 1
    assert info["dtype"] == "uint32" and info["shape"] == [16]
    assert info["mosca_info"] == {
        "server_url": "id00/mosca/simulator", "acq_id": 1, "protocol_version": 1, "file_path": folder,
        "file_prefix": "mosca_simulator_", "data_path": "/entry_0000/mosca_simulator/data",
        "file_format": "hdf5", "points_per_file": 4, "saving_enabled": True, "enabled_detectors": [0, 1]}
    assert stream.event_stream.encoding == {"type": "json"}
    events = raw_events(stream)[:]
    assert events[-1] == {"last_read_index": 5, "last_saved_index": 3}  # the last file closed later
    assert [e["last_read_index"] for e in events] == list(range(NPOINTS))
    # statistics and ROIs: plain numeric channels, named as bliss-mosca names them
    stats = sorted(n for n in scan.streams if ":stat:" in n)
    assert len(stats) == 2 * len(mosca_sim.XIA_STATS)
    assert "mosca_simulator:stat:deadtime_det00" in stats and "mosca_simulator:stat:icr_det01" in stats
    realtime = scan.streams["mosca_simulator:stat:realtime_det00"]
    assert realtime.kind == "array" and realtime.plugin is None and realtime[:].dtype == np.float64
    roi = scan.streams["mosca_simulator:roi:roi1_det01"]
    assert roi[:].dtype == np.int64
    assert np.array_equal(roi[:], rec.mosca_spectra[name][:, 2:6].sum(axis=1))
    events_total = scan.streams["mosca_simulator:stat:events_det01"][:]
    assert np.array_equal(events_total, rec.mosca_spectra[name].sum(axis=1).astype(float))
    # scan_info as BLISS makes it
    final = scan.info
    dev = final["channels"][name]["device"]
    assert final["devices"][dev]["type"] == "mosca" and final["channels"][name]["dim"] == 1
    assert final["channels"]["mosca_simulator:roi:roi1_det01"]["display_name"] == "roi1_det01"
    chain = next(iter(final["acquisition_chain"].values()))
    assert name in chain["spectra"] and "mosca_simulator:stat:icr_det01" in chain["scalars"]


def test_mosca_server_that_stops_saving(tmp_path, data_store):
    det = MoscaDetector(detectors=1, points_per_file=2)
    folder = str(tmp_path / "scan")
    rec = add_mosca(_scan(tmp_path), det, folder, saved=3)
    name = det.spectrum_channel(0)
    assert rec.saved_points[name] == 3 and len(rec.mosca_spectra[name]) == NPOINTS
    assert sorted(os.listdir(folder)) == ["mosca_simulator_spectra_0000.h5", "mosca_simulator_spectra_0001.h5"]
    with h5py.File(det.spectra_file(folder, 1), "r") as f:
        assert f[f"{det.data_path}/spectra_00"].shape == (1, 16)
    key = publish(data_store, rec)
    events = raw_events(_load(data_store, key).streams[name])[:]
    assert events[-1] == {"last_read_index": 5, "last_saved_index": 2}  # what it saved, not what it read


@pytest.mark.skipif("mosca" not in installed_plugins(), reason="blissdata-mosca not installed")
def test_mosca_files_read_by_the_plugins_own_reader(tmp_path, data_store):
    """blissdata-mosca's file reader (no MOSCA server needed) finds our files and spectra."""
    det = MoscaDetector(detectors=(0, 2), points_per_file=4)
    folder = str(tmp_path / "scan")
    rec = add_mosca(_scan(tmp_path), det, folder)
    scan = _load(data_store, publish(data_store, rec))
    for alias in det.aliases:
        name = det.spectrum_channel(alias)
        stream = scan.streams[name]
        assert type(stream).__name__ == "MoscaStream" and stream.kind == "array" and stream.plugin == "mosca"
        refs = stream.get_references(0, NPOINTS)
        assert [(os.path.basename(r.file_path), r.index) for r in refs] == \
            [("mosca_simulator_spectra_0000.h5", i) for i in range(4)] + \
            [("mosca_simulator_spectra_0001.h5", i) for i in range(2)]
        got = stream.file_reader.read_spectra(0, NPOINTS, read_detectors=[alias])[0]
        assert np.array_equal(got, rec.mosca_spectra[name])


# --- JSON streams -----------------------------------------------------------------------


def test_json_stream(tmp_path, data_store):
    events = [{"step": i, "note": f"event {i}"} for i in range(4)] + [{"nested": {"a": [1, 2]}}]
    rec = add_json(_scan(tmp_path), "sample_stage:log", events)
    assert list(rec.stream("sample_stage:log").points) == [0, 1, 2, 3, 4]
    pub = ScanPublisher(data_store, rec, batch_size=2).create().prepare().start()
    with _publishing(pub):
        pub.send_data(stop_after=2)
        assert raw_events(_load_now(pub.join().key, data_store).streams["sample_stage:log"])[:] == events[:2]
        pub.send_data(start_at=2)
        pub.end()
    stream = _load(data_store, pub.key).streams["sample_stage:log"]
    assert type(stream) is Stream and stream.kind == "json" and stream.plugin is None
    assert stream.info == {} and stream.event_stream.encoding == {"type": "json"}
    assert stream[:] == events


# --- Redis content: our stand-ins against the plugins, plugins present and hidden -------


@pytest.mark.skipif("lima2" not in installed_plugins(), reason="blissdata-lima2 not installed")
def test_lima2_stand_in_equals_the_plugin_definition():
    from blissdata_lima2 import Lima2Stream

    kwargs = dict(name="d:frame", source_name="frame", conductor_hostname="h", conductor_port=5,
                  acq_uuid="u", master_file=("/m.h5", "entry_0000/instrument/d/data"), dtype="uint16",
                  shape=(8, 10))
    ours, theirs = lima2_sim.stand_in_definition(**kwargs), Lima2Stream.make_definition(**kwargs)
    assert ours.name == theirs.name
    assert _redis_json(ours.info) == _redis_json(theirs.info)
    assert _redis_json(ours.encoder.info()) == _redis_json(theirs.encoder.info())
    kwargs["master_file"] = None
    assert _redis_json(lima2_sim.stand_in_definition(**kwargs).info) == \
        _redis_json(Lima2Stream.make_definition(**kwargs).info)


@pytest.mark.skipif("mosca" not in installed_plugins(), reason="blissdata-mosca not installed")
def test_mosca_stand_in_equals_the_plugin_definition():
    from blissdata_mosca import MoscaStream

    saving = {"file_path": "/d", "data_path": "/entry_0000/m/data", "file_format": "hdf5",
              "file_prefix": "m_", "points_per_file": 10, "saving_enabled": True, "enabled_detectors": [0, 1]}
    kwargs = dict(name="m:spectrum:spec_det01", detector=1, data_index=1, dtype=np.uint32, shape=(16,),
                  tango_url="id00/mosca/m", acq_id=7, saving=saving)
    ours, theirs = mosca_sim.stand_in_definition(**kwargs), MoscaStream.make_definition(**kwargs)
    assert _redis_json(ours.info) == _redis_json(theirs.info)
    assert ours.encoder.info() == theirs.encoder.info()
    with pytest.raises(ValueError):
        mosca_sim.stand_in_definition(**{**kwargs, "saving": {"file_path": "/d"}})


@pytest.mark.skipif(not {"lima2", "mosca"} <= installed_plugins(), reason="plugins not installed")
def test_redis_content_of_stand_ins_equals_the_plugins(tmp_path, data_store, monkeypatch):
    """The same detectors published once with the plugins' definitions, once with ours."""
    def both():
        rec = _scan(tmp_path)
        rec = add_lima2(rec, Lima2Detector(acq_uuid="fixed"), str(tmp_path / "lima2"))
        rec = add_mosca(rec, MoscaDetector(detectors=2), str(tmp_path / "mosca"))
        scan = _load(data_store, publish(data_store, rec))
        return {name: (s.info, s.event_stream.encoding) for name, s in scan.streams.items()
                if name.startswith(("lima2_simulator:", "mosca_simulator:spectrum:"))}

    with_plugins = both()
    monkeypatch.setitem(sys.modules, "blissdata_lima2", None)  # import fails: the stand-ins are used
    monkeypatch.setitem(sys.modules, "blissdata_mosca", None)
    with pytest.raises(ImportError):
        import blissdata_lima2  # noqa: F401
    stand_ins = both()
    assert len(with_plugins) == 3 and stand_ins == with_plugins


def _publish_both(tmp_path, data_store):
    rec = _scan(tmp_path)
    rec = add_lima2(rec, Lima2Detector(), str(tmp_path / "lima2"))
    rec = add_mosca(rec, MoscaDetector(detectors=1), str(tmp_path / "mosca"))
    return rec, publish(data_store, rec)


def test_streams_with_their_plugins_installed_or_hidden(tmp_path, data_store):
    """What a reader gets: with the plugin (lima2: no conductor) and without it."""
    rec, key = _publish_both(tmp_path, data_store)
    lima2_rec = rec.stream("lima2_simulator:frame")
    mosca_rec = rec.stream("mosca_simulator:spectrum:spec_det00")
    if {"lima2", "mosca"} <= installed_plugins():
        scan = _load(data_store, key)
        lima2 = scan.streams[lima2_rec.name]
        assert isinstance(lima2, BrokenPluginStream)  # its constructor cannot reach the conductor
        assert lima2.kind is None and lima2.plugin == "lima2"
        mosca = scan.streams[mosca_rec.name]
        assert type(mosca).__name__ == "MoscaStream" and mosca.kind == "array"
        for stream, recorded in ((lima2, lima2_rec), (mosca, mosca_rec)):
            assert stream.info == recorded.info
    with hidden_plugins("lima2", "mosca"):
        assert not {"lima2", "mosca"} & installed_plugins()
        scan = _load(data_store, key)
        for recorded in (lima2_rec, mosca_rec):
            stream = scan.streams[recorded.name]
            assert isinstance(stream, MissingPluginStream)
            assert stream.kind is None and stream.plugin == recorded.info["plugin"]
            assert stream.info == recorded.info
            with pytest.raises(MissingPluginException, match=re.escape(
                    f"No plugin matching '{recorded.info['plugin']}' entry point for stream '{recorded.name}'")):
                len(stream)
        # the raw events stay readable
        assert list(raw_events(scan.streams[lima2_rec.name])[:]) == list(lima2_rec.data)
        assert raw_events(scan.streams[mosca_rec.name])[:] == mosca_rec.data
        assert raw_events(scan.streams[lima2_rec.name]).event_stream.encoding == \
            {"type": "numeric", "dtype_str": "<u4", "shape": []}


def test_detectors_stack_on_one_scan(tmp_path, data_store):
    """Each simulator counts the scan's points, not the progress ticks another one added."""
    rec = _scan(tmp_path)
    rec = add_lima2(rec, Lima2Detector(), str(tmp_path / "scan"))
    rec = add_mosca(rec, MoscaDetector(detectors=1), str(tmp_path / "scan"))
    rec = add_json(rec, "log:json", [{"i": i} for i in range(3)])
    assert rec.npoints == NPOINTS
    assert len(rec.mosca_spectra["mosca_simulator:spectrum:spec_det00"]) == NPOINTS
    assert max(rec.stream("log:json").points) < NPOINTS
    scan = _load(data_store, publish(data_store, rec, batch_size=4))
    assert len(scan.streams["mosca_simulator:stat:icr_det00"]) == NPOINTS
    assert len(raw_events(scan.streams["mosca_simulator:spectrum:spec_det00"])) == NPOINTS
    assert raw_events(scan.streams["log:json"])[:] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert len(scan.streams["axis:robx"]) == NPOINTS


def test_hidden_plugins_restores_the_registry():
    before = installed_plugins()
    with hidden_plugins("lima2", "lima", "no_such_plugin"):
        assert "lima" not in installed_plugins() and "lima2" not in installed_plugins()
    assert installed_plugins() == before
