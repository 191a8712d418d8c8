"""Each stream kind through real Redis: published as BLISS and the plugins publish it,
written by the session writer, read back from the file as a user would.

The writer never builds the plugins' stream classes (``transport/raw_scan.py``):
the tests that take ``plugin_mode`` run once with the blissdata plugin hidden and,
when it is installed, once with it, and the file must not differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.simulation.json_stream import add_json
from nexus_writer_service.simulation.lima2 import Lima2Detector, add_lima2, owners
from nexus_writer_service.simulation.mosca import MoscaDetector, add_mosca
from nexus_writer_service.simulation.plugins import hidden_plugins, plugin_installed
from nxvalidation import nexus_errors
from kind_plugin import PLUGIN, installed_toy_kind


def _scan_folder(harness, rec) -> str:
    path = rec.identity.get("path") or str(harness.base / harness.session / f"{harness.session}_nexus.h5")
    return os.path.join(os.path.dirname(path), f"scan{rec.number:04d}")


@pytest.fixture(params=["plugin hidden", "plugin installed"])
def plugin_mode(request):
    """Run the test with the kind's blissdata plugin hidden, and with it when installed."""
    def context(name):
        if request.param == "plugin hidden":
            return hidden_plugins(name)
        if not plugin_installed(name):
            pytest.skip(f"blissdata plugin {name!r} not installed")
        return _nothing()
    return context


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _wait_readable(harness, pub, path: str, enough, timeout: float = 60.0):
    """What another process reads at ``path`` in the scan's file while it runs (None if
    nothing after ``timeout``); a publisher left open would hang the test run: abandoned."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline and not (seen is not None and enough(seen)):
        state = harness.writer.scans.get(pub.key)
        if state is not None and state.file and os.path.exists(state.file):
            try:
                seen = _read_elsewhere(state.file, path)
            except subprocess.CalledProcessError:
                seen = None  # not there yet
        time.sleep(0.2)
    if seen is None or not enough(seen):
        pub.abandon()
    return seen


def _read_elsewhere(path: str, dataset: str) -> np.ndarray:
    """The dataset as h5py reads it in another process and another working directory."""
    code = ("import sys, h5py, numpy as np, hdf5plugin\n"
            "with h5py.File(sys.argv[1], 'r', locking=False) as f:\n"
            "    np.save(sys.stdout.buffer, f[sys.argv[2]][()])\n")
    out = subprocess.run([sys.executable, "-c", code, path, dataset], cwd="/", capture_output=True, check=True)
    import io

    return np.load(io.BytesIO(out.stdout))


@pytest.mark.parametrize("receivers, frames_per_file", [(1, 3), (2, 2)])
def test_lima2_frames_are_referenced_and_read_back(harness, plugin_mode, receivers, frames_per_file):
    det = Lima2Detector(receivers=receivers, frames_per_file=frames_per_file)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec))
    with plugin_mode("lima2"):
        state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    expected = rec.lima_frames[det.channel]
    entry = f"{rec.number}.1"
    with read_file(state.file) as f:
        group = f[f"{entry}/instrument/{det.name}"]
        assert group.attrs["NX_class"] == "NXdetector"
        data = group["data"]
        assert data.is_virtual and data.shape == expected.shape == (6, 8, 10)
        assert np.array_equal(data[()], expected)
        assert all(not os.path.isabs(s.file_name) for s in data.virtual_sources())
        assert int(group["frames_saved"][()]) == 6 and int(group["frames_acquired"][()]) == 6
        master = group["master_data"]  # external link to the master file's frames
        assert master.file.filename.endswith("_master.h5") and np.array_equal(master[()], expected)
        assert np.array_equal(f[f"{entry}/measurement/{det.name}"][()], expected)
        assert f[f"{entry}/images"].attrs["signal"] == det.name
        assert int(f[f"{entry}/writer/points/{det.name}"][()]) == 6
        # the counters are there and right
        assert np.array_equal(f[f"{entry}/measurement/robx"][()], rec.stream("axis:robx").data)
        # what BLISS says about the detector (scan_info's device metadata), as ESRF's writer
        # dumps it beside the frames
        assert group["type"][()] == b"lima2"
        assert group["description"][()] == b"Simulator, Generator"
        for axis in ("x", "y"):
            assert group[f"{axis}_pixel_size"][()] == 75e-6
            assert group[f"{axis}_pixel_size"].attrs["units"] == "m"
        assert group["acq_params"].attrs["NX_class"] == "NXcollection"
        assert {k: group[f"acq_params/acq/{k}"][()] for k in group["acq_params/acq"]} == \
            {"nb_frames": 6, "expo_time": 0.1, "trigger_mode": b"internal"}
        assert group["recv_params/nb_receivers"][()] == receivers
    assert np.array_equal(_read_elsewhere(state.file, f"{entry}/instrument/{det.name}/data"), expected)
    assert nexus_errors(state.file) == []


def test_plugins_are_never_built_for_the_writer(harness, caplog):
    """With blissdata-lima2 installed, its stream class (a tango client of the conductor)
    would be made at each load of the scan and fail with a logged traceback."""
    if not plugin_installed("lima2"):
        pytest.skip("blissdata plugin 'lima2' not installed")
    det = Lima2Detector(receivers=2, frames_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec))
    with caplog.at_level("WARNING", logger="blissdata"):
        state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    plugin_records = [r for r in caplog.records if "plugin" in r.getMessage()]
    assert plugin_records == [], [r.getMessage() for r in plugin_records]


def test_lima2_stopped_early_is_incomplete_with_the_count(harness):
    det = Lima2Detector(receivers=2, frames_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec), saved=4)
    with hidden_plugins("lima2"):
        state = harness.state(harness.publish(rec))
    assert state.status == "INCOMPLETE", state
    assert state.warnings == [f"{det.channel}: 2 of 6 frames were never saved by the detector "
                              "(fill value in the data)"], state.warnings
    with read_file(state.file) as f:
        data = f[f"{rec.number}.1/instrument/{det.name}/data"]
        assert data.shape[0] == 6
        assert np.array_equal(data[:4], rec.lima_frames[det.channel][:4])
        assert int(f[f"{rec.number}.1/instrument/{det.name}/frames_saved"][()]) == 4


@pytest.mark.parametrize("saved", [6, 5])
def test_lima2_without_master_file_nor_frame_idx_is_incomplete_order_not_known(harness, saved):
    """The conductor died before writing the master and the receivers store no
    frame_idx: the frames are referenced dealt round robin over the ranks (a rank with
    fewer frames drops out of the rotation), but that is an assumption: INCOMPLETE."""
    det = Lima2Detector(receivers=2, frames_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec), saved=saved)
    rec.before_close = []  # no master file
    with hidden_plugins("lima2"):
        state = harness.state(harness.publish(rec))
    assert state.status == "INCOMPLETE", state
    order = [w for w in state.warnings if "frame order not known" in w]
    assert order == [f"{det.channel}: no master file at {det.master_file(_scan_folder(harness, rec))} and the "
                     f"receivers store no frame_idx: frame order not known (frames from {({6: 4, 5: 3})[saved]} "
                     f"receiver files placed as if dealt round robin)"], state.warnings
    with read_file(state.file) as f:
        data = f[f"{rec.number}.1/instrument/{det.name}/data"]
        assert data.is_virtual and data.shape[0] == 6
        assert np.array_equal(data[:saved], rec.lima_frames[det.channel][:saved])  # identity: the guess is right
        assert int(f[f"{rec.number}.1/instrument/{det.name}/frames_saved"][()]) == saved
        assert "master_data" not in f[f"{rec.number}.1/instrument/{det.name}"]


@pytest.mark.parametrize("master", [True, False], ids=["master", "no master"])
@pytest.mark.parametrize("ordering", ["identity", "permuted", "dynamic"])
def test_lima2_frames_are_at_their_index_for_any_ordering_or_flagged(harness, ordering, master):
    """However the conductor deals the frames (round robin in rank order, in another
    order, dynamically), each frame of our file is the frame of that index, or the
    scan says it cannot know: INCOMPLETE, "frame order not known"."""
    det = Lima2Detector(receivers=3, frames_per_file=1, ordering=ordering)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec))
    if not master:
        rec.before_close = []
    expected = rec.lima_frames[det.channel]
    assert [int(frame.flat[0]) for frame in expected] == [0, 1000, 2000, 3000, 4000, 5000]  # frame i says i
    dealt = owners(det, 6)
    assert (dealt.tolist() != [0, 1, 2, 0, 1, 2]) == (ordering != "identity")  # not dealt as assumed
    with hidden_plugins("lima2"):
        state = harness.state(harness.publish(rec))
    flagged = [w for w in state.warnings if "frame order not known" in w]
    with read_file(state.file) as f:
        data = f[f"{rec.number}.1/instrument/{det.name}/data"][()]
        assert int(f[f"{rec.number}.1/instrument/{det.name}/frames_saved"][()]) == 6
    if master or ordering == "dynamic":  # the master says, or the receivers' frame_idx does
        assert state.status == "SUCCEEDED", state
        assert flagged == []
        assert np.array_equal(data, expected)
    else:
        assert state.status == "INCOMPLETE", state
        assert len(flagged) == 1, state.warnings
        # placed as if dealt round robin in rank order: rank r's k-th frame at k * 3 + r
        assumed = np.empty(6, dtype=int)
        for r in range(3):
            assumed[np.arange(r, 6, 3)] = np.flatnonzero(dealt == r)
        assert np.array_equal(data, expected[assumed])
        assert np.array_equal(assumed, np.arange(6)) == (ordering == "identity")


def test_lima2_moved_dataset_folder_still_reads(harness):
    det = Lima2Detector(receivers=2, frames_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec))
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    harness.stop()
    folder = os.path.dirname(state.file)
    moved = str(harness.base / "moved")
    shutil.move(folder, moved)
    path = os.path.join(moved, os.path.basename(state.file))
    data = _read_elsewhere(path, f"{rec.number}.1/instrument/{det.name}/data")
    assert np.array_equal(data, rec.lima_frames[det.channel])


def test_mosca_spectra_are_referenced_with_statistics(harness, plugin_mode):
    det = MoscaDetector()
    rec = harness.recording("03_ascan")
    rec = add_mosca(rec, det, _scan_folder(harness, rec))
    with plugin_mode("mosca"):
        state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    entry = f"{rec.number}.1"
    with read_file(state.file) as f:
        for name, spectra in rec.mosca_spectra.items():
            alias = rec.stream(name).info["detector"]
            group = f[f"{entry}/instrument"][[g for g in f[f"{entry}/instrument"] if g.endswith(f"_det{alias:02d}")
                                              or g.endswith(f"_det{alias}")][0]]
            data = group["spectrum"]
            assert data.is_virtual and data.shape == spectra.shape
            assert np.array_equal(data[()], spectra)
            assert int(group["spectra_saved"][()]) == len(spectra)
            # statistics beside the spectra, named as BLISS names them, and the ROI
            assert sorted(group) == ["elapsed_time", "event_count_rate", "events", "fractional_dead_time",
                                     "live_time", "mosca_simulator", "roi1", "spectra_read", "spectra_saved",
                                     "spectrum", "trigger_count_rate", "trigger_live_time", "triggers", "type"]
    assert nexus_errors(state.file) == []


def test_mosca_unsaved_points_are_incomplete_with_the_count(harness):
    det = MoscaDetector()
    rec = harness.recording("03_ascan")
    rec = add_mosca(rec, det, _scan_folder(harness, rec), saved=4)
    with hidden_plugins("mosca"):
        state = harness.state(harness.publish(rec))
    assert state.status == "INCOMPLETE", state
    n = len(rec.mosca_spectra)
    assert sum("2 of 6 spectra never saved by MOSCA" in w for w in state.warnings) == n, state.warnings


def test_json_stream_is_written_event_by_event(harness):
    events = [{"step": i, "note": f"event {i}"} for i in range(5)]
    rec = add_json(harness.recording("03_ascan"), "logger:events", events)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        stored = [json.loads(s) for s in entry["instrument/logger/events"].asstr()[()]]
        assert stored == events
        assert [json.loads(s) for s in entry["measurement/logger_events"].asstr()[()]] == events
    assert nexus_errors(state.file) == []


def test_unknown_kind_is_incomplete_and_named(harness):
    rec = harness.recording("03_ascan")
    rec = add_json(rec, "future:thing", [{"a": 1}])
    rec.stream("future:thing").info["plugin"] = "future_kind"
    with hidden_plugins("future_kind"):
        state = harness.state(harness.publish(rec))
    assert state.status == "INCOMPLETE", state
    unknown = "blissdata plugin 'future_kind': stream kind not written by this writer version"
    assert state.warnings == [f"stream 'future:thing' not written: {unknown}",
                              f"stream 'future:thing' published but not written ({unknown})"], state.warnings
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert np.array_equal(entry["measurement/robx"][()], rec.stream("axis:robx").data)
        notes = [w.decode() for w in entry["writer/warnings"][()]]
        assert notes == state.warnings


def test_a_kind_from_an_entry_point_is_written_without_changing_the_writer(harness, tmp_path):
    """doc/design.md's walkthrough: a kind another package installs (entry point group
    ``nexus_writer_service.kinds``) takes its stream; mapping and writer place and write
    it from its traits alone."""
    rec = add_json(harness.recording("03_ascan"), "toy:toy1", [[1.5, 2.5], [3.5], [4.5, 5.5, 6.5]])
    rec.stream("toy:toy1").info["plugin"] = PLUGIN
    with installed_toy_kind(tmp_path / "site"), hidden_plugins(PLUGIN):
        state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    assert state.written["toy:toy1"] == 6
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert entry["instrument/toy1"].attrs["NX_class"] == "NXdetector"
        assert entry["instrument/toy1/data"][()].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]
        assert entry["instrument/toy1/data"].attrs["units"] == "counts"
        assert entry["measurement/toy1"][()].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]
        assert f.get(f"{rec.number}.1/measurement/toy1", getlink=True).path == f"/{rec.number}.1/instrument/toy1/data"
    assert nexus_errors(state.file) == []


def test_mosca_spectra_grow_in_the_file_while_saved(harness):
    from nexus_writer_service.simulation.replay import ScanPublisher

    det = MoscaDetector(detectors=1, points_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_mosca(rec, det, _scan_folder(harness, rec))
    name = next(iter(rec.mosca_spectra))
    pub = ScanPublisher(harness.ds, rec).create().prepare().start()
    pub.send_data(stop_after=5)  # 5 points read, the files of points 0-3 closed: 4 saved
    path = f"{rec.number}.1/instrument/mosca_simulator_det00/spectrum"
    seen = _wait_readable(harness, pub, path, lambda data: len(data) >= 2)
    # readable while the scan runs (it is not closed yet), at most what was read
    assert seen is not None and 2 <= len(seen) <= 6, seen
    assert np.array_equal(seen, rec.mosca_spectra[name][:len(seen)])
    assert harness.writer.scans[pub.key].status == "WRITING"
    pub.send_data(start_at=5)
    pub.end()
    state = harness.state(pub.key)
    assert state.status == "SUCCEEDED", state
    assert np.array_equal(_read_elsewhere(state.file, path), rec.mosca_spectra[name])


def test_missing_float_frames_read_as_the_fill_value_the_file_states(harness):
    from nexus_writer_service.simulation.lima import LimaDetector, add_lima

    det = LimaDetector(dtype="float32", frames_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_lima(rec, det, _scan_folder(harness, rec), saved=4)
    state = harness.state(harness.publish(rec))
    assert state.status == "INCOMPLETE", state
    with read_file(state.file) as f:
        data = f[f"{rec.number}.1/instrument/{det.name}/data"]
        stated = data.attrs["fill_value"]
        assert np.isnan(stated)  # the file says NaN ...
        assert np.isnan(data[4:]).all() and np.isnan(data.fillvalue)  # ... and a reader gets NaN
        assert np.array_equal(data[:4], rec.lima_frames[det.channel][:4])


def test_lima2_in_a_mesh_plots_in_the_mesh_shape(harness):
    det = Lima2Detector(receivers=2, frames_per_file=3)
    rec = harness.recording("07_amesh")
    rec = add_lima2(rec, det, _scan_folder(harness, rec))
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    expected = rec.lima_frames[det.channel]
    n1, n2 = rec.info_final["npoints1"], rec.info_final["npoints2"]
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert entry[f"instrument/{det.name}/data"].shape == expected.shape == (n1 * n2, 8, 10)
        images = entry["images"][det.name]
        assert images.shape == (n2, n1, 8, 10)
        assert np.array_equal(images[()].reshape(expected.shape), expected)
    assert nexus_errors(state.file) == []


def test_mosca_spectra_read_elsewhere_and_after_moving_the_folder(harness):
    det = MoscaDetector(detectors=1)
    rec = harness.recording("03_ascan")
    rec = add_mosca(rec, det, _scan_folder(harness, rec))
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    (name, spectra), = rec.mosca_spectra.items()
    path = f"{rec.number}.1/instrument/mosca_simulator_det00/spectrum"
    assert np.array_equal(_read_elsewhere(state.file, path), spectra)
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert entry.attrs["default"] in entry  # the counters still make the default plot
        sources = {s.file_name for s in f[path].virtual_sources()}
        assert sources and all(not os.path.isabs(s) for s in sources)
    harness.stop()
    moved = str(harness.base / "moved")
    shutil.move(os.path.dirname(state.file), moved)
    assert np.array_equal(_read_elsewhere(os.path.join(moved, os.path.basename(state.file)), path), spectra)


def test_lima2_frames_are_visible_while_the_scan_runs(harness):
    from nexus_writer_service.simulation.replay import ScanPublisher

    det = Lima2Detector(receivers=2, frames_per_file=2)
    rec = harness.recording("03_ascan")
    rec = add_lima2(rec, det, _scan_folder(harness, rec))
    pub = ScanPublisher(harness.ds, rec).create().prepare().start()
    pub.send_data(stop_after=3)
    path = f"{rec.number}.1/instrument/{det.name}/data"
    seen = _wait_readable(harness, pub, path, lambda data: len(data) >= 2)
    # before the master file exists: the receivers' frames, in round robin order
    assert seen is not None and harness.writer.scans[pub.key].status == "WRITING"
    expected = rec.lima_frames[det.channel]
    assert np.array_equal(seen, expected[:len(seen)]) and len(seen) >= 2
    pub.send_data(start_at=3)
    pub.end()
    state = harness.state(pub.key)
    assert state.status == "SUCCEEDED", state
    assert np.array_equal(_read_elsewhere(state.file, path), expected)
    with read_file(state.file) as f:
        assert f[path].is_virtual and int(f[f"{rec.number}.1/instrument/{det.name}/frames_saved"][()]) == 6
