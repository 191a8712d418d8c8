"""nxtomomill (ESRF's converter from BLISS files to NXtomo, for nabu and tomwer) reads a
tomography sequence written by us, exposure time included (issue 20, item 7).

The sequence is laid out as nxtomomill's own test mocks describe BLISS files
(``nxtomomill/tests/utils/bliss.py``): an initialisation entry titled ``tomo:fullturn``,
then one scan per series, ``dark images``, ``reference images 1`` (flats) and
``projections 1 - 6``, each with a lima camera and the rotation motor ``srot``; the
exposure time of every frame is the camera's ``acq_parameters/acq_expo_time``, which BLISS
publishes in scan_info's device metadata. The scans are real BLISS 2.2.1 recordings
(timescan, ascan) with their motor renamed, replayed through Redis with a simulated lima.
"""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from nexus_writer_service.simulation.lima import LimaDetector, add_lima

pytest.importorskip("nxtomomill")

ROT = "srot"
#: what BLISS's tomo package publishes in scan_meta 'technique' (silx NeXus-dict convention),
#: as nxtomomill's mocks write it: energy, distances, pixel sizes
TECHNIQUE = {
    "@NX_class": "NXcollection",
    "scan": {"energy": 19.0, "energy@units": "keV", "tomo_n": 6,
             "sample_detector_distance": 100.0, "sample_detector_distance@units": "mm",
             "source_sample_distance": 52000.0, "source_sample_distance@units": "mm"},
    "optic": {"sample_pixel_size": [0.0065, 0.0066], "sample_pixel_size@units": "um"},
    "detector": {"pixel_size": [0.00022, 0.00022], "pixel_size@units": "mm"},
    # which motor is which (BLISS's tomo configuration, as the mocks' _add_tomo_config)
    "tomoconfig": {"rotation": [ROT], "detector": ["pcolinux"], "sample_x": ["samx"], "sample_y": ["samy"],
                   "translation_x": ["tx"], "translation_y": ["ty"], "translation_z": ["sz"],
                   "rotation_is_clockwise": False},
}
#: sample stages and translations (mm) nxtomomill reads in instrument/positioners
STAGES = {"samx": 0.25, "samy": -0.5, "sz": 1.5, "tx": 2.0, "ty": -2.0}
#: distinct per series, so that a frame given another series' exposure time shows
EXPO = {"dark": 0.5, "flat": 0.2, "projection": 0.1}


def _renamed(obj, old: str, new: str):
    """``obj`` with ``old`` replaced by ``new`` in every string, keys included."""
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, dict):
        return {_renamed(k, old, new): _renamed(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_renamed(v, old, new) for v in obj]
    return obj


def _rotation_scan(rec, title: str, second: int):
    """``rec`` with its motor robx as the rotation stage ``srot`` (degrees), titled ``title``,
    started ``second`` seconds after the sequence (nxtomomill orders entries by start time:
    the recordings were taken in another order)."""
    rec = rec.copy()
    for stage in ("info_created", "info_prepared", "info_final"):
        info = _renamed(getattr(rec, stage), "robx", ROT)
        info["title"] = title
        info["start_time"] = f"2026-11-24T05:34:{second:02d}.000000+00:00"
        if "end_time" in info:
            info["end_time"] = f"2026-11-24T05:34:{second:02d}.900000+00:00"
        if f"axis:{ROT}" in info.get("channels", {}):
            info["channels"][f"axis:{ROT}"]["unit"] = "deg"
        # the session's other motors at the start (a tomography station's sample stages)
        positioners = info.get("positioners") or {}
        for key, values in positioners.items():
            if isinstance(values, dict):
                values.update({m: ("mm" if key == "positioners_units" else v) for m, v in STAGES.items()})
        if "positioners_units" in positioners:
            positioners["positioners_units"][ROT] = "deg"
        setattr(rec, stage, info)
    for stream in rec.streams:
        stream.name = stream.name.replace("robx", ROT)
        stream.info = _renamed(stream.info, "robx", ROT)
    return rec


def _with_camera(harness, rec, series: str):
    det = LimaDetector(name="pcolinux", shape=(8, 10), frames_per_file=4, expo_time=EXPO[series])
    images = os.path.join(os.path.dirname(rec.identity["path"]), f"scan{rec.number:04d}")
    return add_lima(rec, det, images), det


def test_tomography_sequence_converts_with_every_frames_exposure_time(harness, tmp_path):
    parent = harness.recording("26_sequence", number=100)
    for stage in ("info_created", "info_prepared", "info_final"):
        info = getattr(parent, stage)
        info["title"] = "tomo:fullturn"
        # BLISS's tomo package: the acquisition's geometry in scan_meta 'technique'
        info["technique"] = TECHNIQUE
        info["scan_meta_categories"] = sorted({*info["scan_meta_categories"], "technique"})
    dark, det = _with_camera(harness, _rotation_scan(harness.recording("13_timescan", number=101),
                                                      "dark images", 2), "dark")
    flat, _ = _with_camera(harness, _rotation_scan(harness.recording("13_timescan", number=102),
                                                    "reference images 1", 4), "flat")
    proj, _ = _with_camera(harness, _rotation_scan(harness.recording("03_ascan", number=103),
                                                    "projections 1 - 6", 6), "projection")
    seq_key, child_keys = harness.publish_sequence(parent, [dark, flat, proj])
    scans = harness.states([seq_key, *child_keys])
    assert [scans[k].status for k in [seq_key, *child_keys]] == ["SUCCEEDED"] * 4
    source = scans[seq_key].file
    assert {scans[k].file for k in child_keys} == {source}

    output = tmp_path / "tomo.nx"
    done = subprocess.run(
        [sys.executable, "-m", "nxtomomill", "h52nx", source, str(output), "--raises-error",
         "--single-file", "--overwrite", "--no-input"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    frames = {s: rec.lima_frames[det.channel] for s, rec in (("dark", dark), ("flat", flat), ("projection", proj))}
    assert [len(f) for f in frames.values()] == [5, 5, 6]
    with h5py.File(output, "r") as f:
        assert list(f) == ["entry0000"]
        nxtomo = f["entry0000"]
        assert nxtomo["definition"][()] == b"NXtomo"
        detector = nxtomo["instrument/detector"]
        # darks (2), flats (1), projections (0), in the order they were taken
        assert detector["image_key_control"][()].tolist() == [2] * 5 + [1] * 5 + [0] * 6
        assert np.array_equal(detector["data"][()], np.concatenate(list(frames.values())))
        # the exposure time of every frame: its series' acq_expo_time, in seconds
        assert detector["count_time"][()].tolist() == [0.5] * 5 + [0.2] * 5 + [0.1] * 6
        assert detector["count_time"].attrs["units"] == "s"
        # the projections' angles are the rotation motor's positions
        angles = nxtomo["sample/rotation_angle"][()]
        assert np.allclose(angles[10:], proj.stream(f"axis:{ROT}").data)
