"""Metadata BLISS sends that ESRF's writer loses or places by ICAT's rules, replayed
through a real Redis: the ESRF data policy's ``dataset_metadata_snapshot`` (Sample*
fields where ICAT's definitions put them, the rest under their ICAT names), the user
keys of ``scan_info={...}``, and ``writer_options.separate_scan_files`` (each scan in its
own file, linked from the dataset file)."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.mapping.metadata import icat_path, user_scan_info_keys
from nexus_writer_service.simulation.recording import FIXTURE_DIR, load_recording
from nxvalidation import empty_groups, nexus_errors
from test_bad_input import _edit_info

SNAPSHOT = {
    "Sample_name": "LaB6_batch2", "Sample_description": "from the ICAT dataset", "Sample_distance": "12.5",
    "SampleEnvironment_name": "cryostream", "SampleEnvironmentSensors_value": "100 250.5",
    "SampleEnvironmentSensors_name": "cryo_t heater_p", "Sample_ub_matrix": "1 0 0 0 1 0 0 0 2",
    "Sample_situation": "in a jar", "Sample_temperature_env": "cryostream 100 K",
    "SamplePositioners_name": "robx roby", "SamplePositioners_value": "0 0",
    "SampleTrackingParcel_storage_condition": "-80", "Sample_notes": "handle with care",
    "SamplePatient_age": "unknown", "Sample_chemical_formula": "",
    "definition": "XRD", "InstrumentSource_mode": "7/8 multibunch",
}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _with_snapshot(rec, snapshot=SNAPSHOT):
    def edit(info):
        info["data_policy"] = "ESRF"
        info["dataset_metadata_snapshot"] = copy.deepcopy(snapshot)
        return info

    _edit_info(rec, edit)
    return rec


def _icat_sample_fields() -> dict[str, tuple[str, list[str]]]:
    """ICAT field -> (NeXus path, NX classes of its groups), from ICAT's own definitions."""
    definitions = pytest.importorskip("icat_esrf_definitions")
    root = ET.parse(Path(definitions.__file__).parent / "hdf5_cfg.xml").getroot()
    out = {}

    def walk(el, path, classes):
        for child in el:
            if child.tag == "group":
                walk(child, path + [child.get("groupName")], classes + [child.get("NX_class")])
                continue
            m = re.fullmatch(r"\$\{(\w+)\}", (child.text or "").strip())
            if m and m.group(1).startswith("Sample"):
                out[m.group(1)] = ("/".join(path + [child.tag]), classes)

    walk(root, [], [])
    return out


def test_sample_fields_go_where_icats_definitions_put_them():
    fields = _icat_sample_fields()
    assert len(fields) > 40 and "SampleEnvironmentSensors_name" in fields
    assert {name: icat_path(name) for name in fields} == {name: path for name, (path, _) in fields.items()}
    assert icat_path("definition") is None and icat_path("Sample2_x") is None


def test_dataset_snapshot_fills_sample_and_keeps_the_other_fields(harness):
    rec = _with_snapshot(harness.recording("03_ascan"))
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED" and state.warnings == [], state
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        sample = entry["sample"]
        assert _text(sample.attrs["NX_class"]) == "NXsample"
        assert _text(sample["name"][()]) == "LaB6_batch2"
        assert _text(sample["name"].attrs["icat_field"]) == "Sample_name"
        assert sample["distance"][()] == 12.5 and _text(sample["distance"].attrs["units"]) == "mm"
        assert _text(sample["environment"].attrs["NX_class"]) == "NXenvironment"
        assert _text(sample["environment/name"][()]) == "cryostream"
        assert _text(sample["environment/sensors"].attrs["NX_class"]) == "NXsensor"
        assert sample["environment/sensors/value"][()].tolist() == [100.0, 250.5]  # NXsensor: NX_FLOAT
        assert _text(sample["environment/sensors/name"][()]) == "cryo_t heater_p"
        assert sample["ub_matrix"][()].tolist() == [[[1, 0, 0], [0, 1, 0], [0, 0, 2]]]
        assert sample["tracking/parcel/storage_condition"][()] == -80.0
        assert _text(sample["notes"].attrs["NX_class"]) == "NXnote"
        assert _text(sample["notes/notes"][()]) == "handle with care"
        # a number ICAT expects that is not one stays as typed, without units
        assert _text(sample["patient/age"][()]) == "unknown" and "units" not in sample["patient/age"].attrs
        # positioners (instrument/positioners has them) and empty values are left out
        assert "positioners" not in sample and "chemical_formula" not in sample
        others = entry["dataset_metadata"]
        assert _text(others.attrs["NX_class"]) == "NXcollection"
        # the fields that are not the sample's, and the sample's values NeXus cannot take
        # where ICAT puts them (situation is one of NXsample's words; temperature_env a group)
        assert {k: _text(others[k][()]) for k in others} == {
            "definition": "XRD", "InstrumentSource_mode": "7/8 multibunch",
            "Sample_situation": "in a jar", "Sample_temperature_env": "cryostream 100 K"}
        assert "situation" not in sample and "temperature_env" not in sample
        assert _text(others["Sample_situation"].attrs["icat_field"]) == "Sample_situation"
        assert "user_scan_info" not in entry  # this scan has no scan_info={...} keys
    assert nexus_errors(state.file) == []
    assert empty_groups(state.file) == []


def test_the_scans_sample_metadata_wins_and_the_beamline_default_loses(make_harness):
    harness = make_harness(beamline={"sample": {"name": "unknown sample", "situation": "air"}})
    rec = _with_snapshot(harness.recording("19_ascan_usermeta"))
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        sample = f[f"{rec.number}.1/sample"]
        assert _text(sample["name"][()]) == "LaB6"  # usm.sample.set(...) in the scan
        assert _text(sample["description"][()]) == "NIST SRM 660c"
        assert _text(sample["environment/name"][()]) == "cryostream"  # ICAT fills in
        assert _text(sample["situation"][()]) == "air"  # the beamline's default, where nobody said
    assert nexus_errors(state.file) == []


def test_no_snapshot_no_group(harness):
    state = harness.state(harness.publish(harness.recording("03_ascan")))
    with read_file(state.file) as f:
        entry = f[state.entries[0]]
        assert "sample" not in entry and "dataset_metadata" not in entry and "user_scan_info" not in entry


def test_user_scan_info_keys_are_only_the_users():
    found = {}
    for path in sorted(FIXTURE_DIR.glob("[0-9]*_*.json")):
        keys = user_scan_info_keys(load_recording(path.stem).info_final)
        if keys:
            found[path.stem] = keys
    assert {k: sorted(v) for k, v in found.items()} == {"19_ascan_usermeta": ["my_user_block", "sample_description"]}
    assert user_scan_info_keys({"scan_meta_categories": ["mine"], "mine": {}, "npoints": 3,
                                "writer_options": {}, "h5maps": {}, "extra": 1}) == ["extra"]


def test_user_scan_info_is_kept_in_a_collection(harness):
    rec = harness.recording("19_ascan_usermeta")
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED" and state.warnings == [], state
    with read_file(state.file) as f:
        user = f[f"{rec.number}.1/user_scan_info"]
        assert _text(user.attrs["NX_class"]) == "NXcollection"
        assert sorted(user) == ["my_user_block", "sample_description"]
        assert _text(user["sample_description"][()]) == "top-level user key"
        assert _text(user["my_user_block"].attrs["NX_class"]) == "NXcollection"
        assert _text(user["my_user_block/operator"][()]) == "jdoe"
        assert user["my_user_block/values"][()].tolist() == [1, 2, 3]
    assert nexus_errors(state.file) == []


def test_separate_scan_files_put_the_scan_in_its_folder_linked_from_the_dataset(harness):
    rec = harness.recording("03_ascan")
    dataset_file = Path(rec.identity["path"])
    scan_dir = dataset_file.parent / f"scan{rec.number:04d}"

    def edit(info):
        info["writer_options"] = {"chunk_options": {}, "separate_scan_files": True}
        info["images_path"] = str(scan_dir / "{img_acq_device}_")
        return info

    _edit_info(rec, edit)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    scan_file = scan_dir / "bliss_master.h5"
    assert state.file == str(scan_file)  # the data are in the scan's own file ...
    entry = f"{rec.number}.1"
    with read_file(scan_file) as f:
        assert np.array_equal(f[f"{entry}/measurement/robx"][()], rec.stream("axis:robx").data)
    with read_file(dataset_file) as f:  # ... and the dataset file links its entry there
        link = f.get(entry, getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert link.filename == f"scan{rec.number:04d}/bliss_master.h5" and link.path == f"/{entry}"
        assert np.array_equal(f[f"{entry}/measurement/robx"][()], rec.stream("axis:robx").data)
    assert not any("separate_scan_files" in w for w in state.warnings)
