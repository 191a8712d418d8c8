"""2D detectors: lima frames referenced from the scan entry, never copied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.simulation.lima import LimaDetector, add_lima
from nxvalidation import nexus_errors


def lima_scan(harness, fixture, det, saved=None, number=None):
    rec = harness.recording(fixture, number=number)
    path = rec.identity.get("path") or str(harness.base / harness.session / f"{harness.session}_nexus.h5")
    images = os.path.join(os.path.dirname(path), f"scan{rec.number:04d}")
    return add_lima(rec, det, images, saved=saved)


@pytest.mark.parametrize("file_format, frames_per_file", [("hdf5", 1), ("HDF5", 4), ("edf", 1), ("EDF", 3)])
def test_frames_are_referenced_and_read_back(harness, file_format, frames_per_file):
    det = LimaDetector(file_format=file_format, frames_per_file=frames_per_file)
    rec = lima_scan(harness, "03_ascan", det)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    expected = rec.lima_frames[det.channel]
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        detector = entry[f"instrument/{det.name}"]
        assert detector.attrs["NX_class"] == "NXdetector"
        data = detector["data"]
        assert data.shape == expected.shape == (6, 8, 10)
        assert np.array_equal(data[()], expected)
        assert np.array_equal(entry[f"measurement/{det.name}"][()], expected)
        if file_format.upper() == "HDF5":
            assert data.is_virtual
            files = {s.file_name for s in data.virtual_sources()}
            assert all(not os.path.isabs(name) for name in files)  # relative: the folder can move
            assert len(files) == -(-6 // frames_per_file)
        else:
            assert data.external  # HDF5 external raw storage over the EDF pixels
        uris = [u.decode() for u in detector["frame_uris"][()]]
        assert len(uris) == 6 and uris[0].startswith("silx:" if file_format.upper() == "HDF5" else "fabio:")
        images = entry["images"]
        assert images.attrs["signal"] == det.name
        assert images.attrs["interpretation"] == "image"
        assert int(entry[f"writer/points/{det.name}"][()]) == 6
        # lima's ROI counters are with the frames, under the detector
        roi = detector["roi1_sum"][()]
        assert np.array_equal(roi, expected.reshape(6, -1).sum(axis=1))
        # the counters still make the default plot
        assert entry.attrs["default"] == "plotselect"
    assert nexus_errors(state.file) == []


READ_MOVED = """
import sys, h5py, numpy
with h5py.File(sys.argv[1], "r", locking=False) as f:
    numpy.save(sys.stdout.buffer, f[sys.argv[2]][()])
"""


def test_moved_dataset_folder_keeps_its_frames(harness, tmp_path):
    det = LimaDetector(file_format="HDF5", frames_per_file=2)
    rec = lima_scan(harness, "03_ascan", det)
    state = harness.state(harness.publish(rec))
    harness.stop()
    moved = tmp_path / "elsewhere" / "moved_session"
    shutil.move(os.path.dirname(state.file), moved)
    new_file = moved / os.path.basename(state.file)
    other_dir = tmp_path / "another_cwd"
    other_dir.mkdir()
    out = subprocess.run([sys.executable, "-c", READ_MOVED, str(new_file),
                          f"{rec.number}.1/instrument/{det.name}/data"],
                         cwd=other_dir, capture_output=True, check=True)
    import io

    assert np.array_equal(np.load(io.BytesIO(out.stdout)), rec.lima_frames[det.channel])


def test_detector_that_stops_saving_gives_an_incomplete_scan(harness):
    det = LimaDetector(file_format="HDF5", frames_per_file=2)
    rec = lima_scan(harness, "03_ascan", det, saved=3)
    state = harness.state(harness.publish(rec))
    assert state.status == "INCOMPLETE"
    warning = f"{det.channel}: 3 of 6 frames were never saved by the detector (fill value in the data)"
    assert state.warnings == [warning]
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        data = entry[f"instrument/{det.name}/data"]
        assert data.shape == (6, 8, 10)
        assert np.array_equal(data[:3], rec.lima_frames[det.channel][:3])
        assert (data[3:] == 0).all() and data.attrs["fill_value"] == 0
        assert entry["writer/status"][()] == b"INCOMPLETE"
        assert list(entry["writer/warnings"][()]) == [warning.encode()]
        assert int(entry[f"instrument/{det.name}/frames_saved"][()]) == 3
    assert "frames were never saved" in harness.caplog.text


def test_mesh_with_a_2d_detector_gives_an_image_stack_in_the_mesh_shape(harness):
    det = LimaDetector(file_format="HDF5", frames_per_file=5)
    rec = lima_scan(harness, "07_amesh", det)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED"
    frames = rec.lima_frames[det.channel]
    with read_file(state.file) as f:
        images = f[f"{rec.number}.1/images"]
        stack = images[det.name]
        assert stack.shape == (3, 4, 8, 10)  # (slow, fast, height, width)
        assert np.array_equal(stack[()].reshape(12, 8, 10), frames)
        assert np.array_equal(stack[1, 2], frames[6])
    assert nexus_errors(state.file) == []


def test_lima_in_a_multi_top_master_scan_goes_to_its_subscan(harness):
    from nexus_writer_service.simulation.recording import relocate
    from nexus_writer_service.simulation.synthetic import multi_top_master

    det = LimaDetector(file_format="HDF5", frames_per_file=4)
    rec = relocate(multi_top_master(npoints2=8), harness.base, session=harness.session)
    rec = add_lima(rec, det, str(harness.base / harness.session / "scan_mtm"))
    # the detector belongs to the second top master's chain
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        chains = info["acquisition_chain"]
        chains["axis"]["images"].remove(det.channel)
        chains["fast_timer"]["images"] = [det.channel]
        roi = f"{det.name}:roi_counters:roi1_sum"
        chains["axis"]["scalars"].remove(roi)
        chains["fast_timer"]["scalars"].append(roi)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        assert det.name not in f[f"{rec.number}.1/instrument"]
        data = f[f"{rec.number}.2/instrument/{det.name}/data"]
        assert np.array_equal(data[()], rec.lima_frames[det.channel])
    assert nexus_errors(state.file) == []


def _tree(group) -> dict:
    """{path: (value, attributes without NX_class)} of every dataset below ``group``;
    groups as {path/: NX_class}."""
    out = {}

    def visit(name, obj):
        if hasattr(obj, "shape"):
            value = obj[()]
            value = value.decode() if isinstance(value, bytes) else (
                value.tolist() if isinstance(value, np.ndarray) else value.item())
            out[name] = (value, {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in obj.attrs.items()})
        else:
            out[f"{name}/"] = obj.attrs["NX_class"]
    group.visititems(visit)
    return out


@pytest.mark.parametrize("file_format", ["hdf5", "edf"])
def test_detector_metadata_as_esrfs_writer_dumps_it(harness, file_format):
    """The lima camera's metadata in scan_info (type, description, pixel sizes, camera,
    acquisition and control parameters), in its NXdetector group as ESRF's writer writes
    it: nxtomomill reads the exposure time in acq_parameters/acq_expo_time."""
    det = LimaDetector(file_format=file_format, frames_per_file=2, expo_time=0.25)
    rec = lima_scan(harness, "03_ascan", det)
    images_dir = os.path.join(os.path.dirname(rec.identity["path"]), f"scan{rec.number:04d}")
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        detector = f[f"{rec.number}.1/instrument/{det.name}"]
        metadata = {k: v for k, v in _tree(detector).items()
                    if k.split("/")[0] in ("type", "description", "x_pixel_size", "y_pixel_size",
                                           "camera_settings", "acq_parameters", "ctrl_parameters")}
    ext = "h5" if file_format == "hdf5" else "edf"
    assert metadata == {
        "type": ("lima", {}),
        "description": ("Simulator, Generator", {}),
        "x_pixel_size": (55e-6, {"units": "m"}),
        "y_pixel_size": (55e-6, {"units": "m"}),
        "camera_settings/": "NXcollection",
        "camera_settings/mode": ("GENERATOR", {}),
        "camera_settings/nb_prefetched_frames": (1, {}),
        "acq_parameters/": "NXcollection",
        "acq_parameters/acq_mode": ("SINGLE", {}),
        "acq_parameters/acq_nb_frames": (6, {}),
        "acq_parameters/acq_expo_time": (0.25, {}),
        "acq_parameters/acq_trigger_mode": ("INTERNAL_TRIGGER_MULTI", {}),
        "acq_parameters/latency_time": (0.0, {}),
        "acq_parameters/saving_statistics_history": (6, {}),
        "acq_parameters/saving_mode": ("AUTO_FRAME", {}),
        "acq_parameters/saving_directory": (images_dir, {}),
        "acq_parameters/saving_prefix": (f"{det.name}_", {}),
        "ctrl_parameters/": "NXcollection",
        "ctrl_parameters/saving_format": ("HDF5" if ext == "h5" else "EDF", {}),
        "ctrl_parameters/saving_frame_per_file": (2, {}),
        "ctrl_parameters/saving_suffix": (f".{ext}", {}),
        "ctrl_parameters/saving_managed_mode": ("SOFTWARE", {}),
        "ctrl_parameters/image_rotation": ("NONE", {}),
        "ctrl_parameters/image_flip": ([False, False], {}),
        "ctrl_parameters/image_bin": ([1, 1], {}),
        "ctrl_parameters/image_roi": ([0, 0, 10, 8], {}),
    }
    assert nexus_errors(state.file) == []
