"""Application definitions: a technique naming NXfluo, NXxas or NXscan gives a subentry that
pynxtools validates AGAINST that definition with zero errors (replayed real scans, the
documented example configuration), while the base-class checks of the file stay clean."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.mapping.appdefs import HC_KEV_ANGSTROM
from nexus_writer_service.metadata import config as beamline_config
from nexus_writer_service.metadata.config import ConfigError, load_raw, loads
from nxvalidation import appdef_errors, empty_groups, nexus_errors

EXAMPLE = Path(beamline_config.__file__).parent / "examples" / "appdefs.yml"


def _technique(rec, name: str):
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info.setdefault("nexuswriter", {})["technique"] = name
    return rec


def scanning(rec, motor: str, units: str, start: float, stop: float):
    """A recorded scan of robx (mm) as if it had scanned ``motor`` in ``units``."""
    def renamed(obj):
        return json.loads(json.dumps(obj).replace("robx", motor))

    rec.info_created, rec.info_prepared, rec.info_final = (
        renamed(i) for i in (rec.info_created, rec.info_prepared, rec.info_final))
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info["channels"][f"axis:{motor}"]["unit"] = units
        info["positioners"]["positioners_units"][motor] = units
    axis = rec.stream("axis:robx")
    axis.name, axis.info = f"axis:{motor}", renamed(axis.info)
    axis.data = np.linspace(start, stop, len(axis.data))
    return rec


def energy_scan(rec):
    """An XAS scan: the monochromator energy (keV) scanned."""
    return scanning(rec, "energy", "keV", 7.10, 7.14)


@pytest.fixture
def written(make_harness):
    harness = make_harness(beamline=load_raw(str(EXAMPLE)), beamline_source=str(EXAMPLE))
    recs = {"xrf": _technique(harness.recording("10_loopscan_mca"), "xrf"),
            "xas": _technique(energy_scan(harness.recording("03_ascan")), "xas"),
            # the configured default technique, on a rotation
            "scan": scanning(harness.recording("03_ascan", number=90), "ths", "deg", -1.0, 1.0)}
    states = {name: harness.state(harness.publish(rec)) for name, rec in recs.items()}
    assert {s.status for s in states.values()} == {"SUCCEEDED"}, states
    return recs, states


def test_each_example_technique_validates_against_its_application_definition(written):
    recs, states = written
    for name, definition in (("xrf", "NXfluo"), ("xas", "NXxas"), ("scan", "NXscan")):
        path, entry = states[name].file, f"{recs[name].number}.1"
        with read_file(path) as f:
            sub = f[f"{entry}/{name}"]
            assert sub.attrs["NX_class"] == "NXsubentry"
            assert sub["definition"][()].decode() == definition
            assert "writer/warnings" not in f[entry]
        assert appdef_errors(path, f"/{entry}/{name}", definition) == [], name
    path = states["xrf"].file
    assert nexus_errors(path) == []  # the base-class checks of the whole file
    assert empty_groups(path) == []


def test_the_subentries_hold_the_scans_data(written):
    recs, states = written
    with read_file(states["xrf"].file) as f:
        xrf = f[f"{recs['xrf'].number}.1/xrf"]
        spectra = recs["xrf"].stream("simu1:spectrum_det0").data
        assert np.array_equal(xrf["instrument/fluorescence/data"][()], spectra)
        assert np.allclose(xrf["instrument/fluorescence/energy"][:3], [0.0, 0.02, 0.04])
        assert xrf["instrument/monochromator/wavelength"][()] == pytest.approx(HC_KEV_ANGSTROM / 17.0)
        assert xrf["instrument/source/probe"][()] == b"x-ray"
        assert np.array_equal(xrf["monitor/data"][()], recs["xrf"].stream("simu1:triggers_det0").data)
        assert xrf["monitor/preset"][()] == recs["xrf"].info_final["count_time"]
        assert xrf["sample/name"][()] == b"unknown sample"
        assert xrf["data"].attrs["signal"] == "data"
        xas = f[f"{recs['xas'].number}.1/xas"]
        assert np.allclose(xas["energy"][()], recs["xas"].stream("axis:energy").data)
        assert xas["energy"].attrs["units"] == "keV"
        assert np.array_equal(xas["intensity"][()],
                              recs["xas"].stream("simulation_diode_sampling_controller:diode2").data)
        assert xas["element/name"][()] == b"Fe" and xas["edge/name"][()] == b"K"
        scan = f[f"{recs['scan'].number}.1/scan"]
        it = recs["scan"].stream("simulation_diode_sampling_controller:diode2").data
        # NX_INT over a float channel: an int64 view, HDF5 converting on read
        assert scan["instrument/detector/data"].dtype == np.int64
        assert np.array_equal(scan["instrument/detector/data"][()], it.astype(np.int64))
        assert scan["instrument/detector/data"].is_virtual
        assert np.array_equal(scan["sample/rotation_angle"][()], recs["scan"].stream("axis:ths").data)
        assert scan["sample/rotation_angle"].attrs["units"] == "deg"
        # a diode scan of a linear motor is no NXscan (rotation_angle is an angle): not claimed
        xas_as_scan = f[f"{recs['xas'].number}.1"]
        assert "scan" not in xas_as_scan


def test_a_subentry_that_cannot_follow_its_definition_does_not_claim_it(make_harness):
    raw = load_raw(str(EXAMPLE))
    raw = copy.deepcopy(raw)
    del raw["sample"]
    harness = make_harness(beamline=raw, beamline_source="no sample")
    rec = _technique(harness.recording("10_loopscan_mca"), "xrf")
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED"
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert "definition" not in entry["xrf"]
        warnings = [w.decode() for w in entry["writer/warnings"][()]]
    assert "technique 'xrf': not written as NXfluo: no sample name (configure sample.name, or set it in the " \
           "scan's sample metadata)" in warnings
    assert nexus_errors(state.file) == []


def test_a_definition_without_the_channels_it_needs_is_refused_in_the_configuration():
    with pytest.raises(ConfigError, match="techniques.xas: NXxas needs 'edge'"):
        loads("techniques:\n  xas:\n    definition: NXxas\n    energy: e\n    detector: it\n    element: Fe\n")
