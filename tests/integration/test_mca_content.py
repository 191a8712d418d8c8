"""MCA content as a scientist reads it: units on every statistic, @interpretation on the
spectra, and an axis along the spectra in every plot of them (channel index; energy
from the beamline's calibration). Real BLISS scans (simulated MCA) and MOSCA scans,
replayed through a real Redis."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import yaml
from silx.io.nxdata import NXdata

from conftest import read_file
from nexus_writer_service.mapping.channels import MCA_FIELDS, MCA_UNITS
from nexus_writer_service.simulation.mosca import MoscaDetector, add_mosca
from nexus_writer_service.simulation.plugins import hidden_plugins
from nexus_writer_service.simulation.recording import FIXTURE_DIR
from nxvalidation import nexus_errors

#: what each statistic is, in the file (NeXus field name -> units)
EXPECTED_UNITS = {
    "elapsed_time": "s", "trigger_live_time": "s", "live_time": "s",
    "trigger_count_rate": "hertz", "event_count_rate": "hertz",
    "fractional_dead_time": "1", "triggers": "counts", "events": "counts",
}


def _units(dset: h5py.Dataset) -> str | None:
    value = dset.attrs.get("units")
    return value.decode() if isinstance(value, bytes) else value


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_the_units_table_covers_every_statistic():
    assert {MCA_FIELDS[k]: MCA_UNITS[k] for k in MCA_UNITS} == EXPECTED_UNITS
    assert set(MCA_FIELDS) - set(MCA_UNITS) == {"spectrum"}


def _write(harness, rec):
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    return state


def test_mca_statistics_have_units_and_spectra_a_channel_axis(harness):
    rec = harness.recording("10_loopscan_mca")
    state = _write(harness, rec)
    entry = f"{rec.number}.1"
    with read_file(state.file) as f:
        inst = f[f"{entry}/instrument"]
        for det in range(4):
            grp = inst[f"simu1_det{det}"]
            assert {name: _units(grp[name]) for name in EXPECTED_UNITS} == EXPECTED_UNITS
            assert _text(grp["spectrum"].attrs["interpretation"]) == "spectrum"
            assert grp["spectrum"].shape == (5, 1024)
            # what h5web and silx label the spectrum with
            assert _units(grp["spectrum"]) == "counts"
            assert _text(grp["spectrum"].attrs["long_name"]) == f"simu1_det{det} (counts)"
            # the measurement link leads to the same dataset, units and all
            assert _units(f[f"{entry}/measurement/simu1_det{det}_live_time"]) == "s"
        spectra = f[f"{entry}/spectra"]
        nxdata = NXdata(spectra)
        assert nxdata.is_valid, nxdata.issues
        assert nxdata.signal_dataset_name == "simu1_det0"
        assert nxdata.signal_name == "simu1_det0 (counts)"  # silx labels the plot with @long_name
        assert [a.name.rpartition("/")[2] if a is not None else None for a in nxdata.axes] == [None, "channel"]
        assert np.array_equal(spectra["channel"][()], np.arange(1024))
        assert int(spectra.attrs["channel_indices"]) == 1
        assert _text(spectra.attrs["interpretation"]) == "spectrum"
        assert sorted(_text(s) for s in spectra.attrs["auxiliary_signals"]) == [f"simu1_det{i}" for i in (1, 2, 3)]
        # the plotted spectra are the data (links), not copies
        assert np.array_equal(spectra["simu1_det2"][()], rec.stream("simu1:spectrum_det2").data)
        # the statistic without units in Redis has them in the file, with its values
        assert np.array_equal(inst["simu1_det0/live_time"][()], rec.stream("simu1:energy_livetime_det0").data)
    assert nexus_errors(state.file) == []


def _reference_entry(fixture: str) -> dict:
    ref = json.loads((FIXTURE_DIR / "reference_blisswriter_2.0.0_h5_layout.json").read_text())
    for entries in (f["entries"] for f in ref["files"].values()):
        for layout in entries.values():
            if layout["fixture"] == f"{fixture}.json":
                return layout["layout"]
    raise KeyError(fixture)


def test_every_unit_and_interpretation_of_esrfs_writer_is_in_ours(harness):
    """ESRF's writer (blisswriter 2.0.0) for the same real scan: each units and
    interpretation attribute it wrote on an MCA field, we write too (and more)."""
    rec = harness.recording("10_loopscan_mca")
    state = _write(harness, rec)
    ref = _reference_entry("10_loopscan_mca")
    compared = 0
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        for path, item in ref.items():
            if not path.startswith("/instrument/simu1_det") or "attrs" not in item or path.endswith("/"):
                continue
            for attr in ("units", "interpretation"):
                if attr in item["attrs"]:
                    assert _text(entry[path.lstrip("/")].attrs[attr]) == item["attrs"][attr], path
                    compared += 1
        # where ESRF's writer left units out, ours has them
        assert "units" not in ref["/instrument/simu1_det0/event_count_rate"].get("attrs", {})
        assert _units(entry["instrument/simu1_det0/event_count_rate"]) == "hertz"
    assert compared == 4 * 5  # 4 elements x (elapsed, live, trigger live, icr, spectrum)


CALIBRATED = """
detectors:
  simu1: {type: MCA, energy_calibration: [0.1, 0.02, 0.00001]}
plots:
  one_element:
    signal: simu1_det1
"""


def test_energy_axis_from_the_configured_calibration(make_harness):
    harness = make_harness(beamline=yaml.safe_load(CALIBRATED))
    rec = harness.recording("10_loopscan_mca")
    state = _write(harness, rec)
    channels = np.arange(1024.0)
    expected = 0.1 + 0.02 * channels + 0.00001 * channels ** 2
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        for name in ("spectra", "one_element"):  # the automatic plot and a configured one
            nxdata = NXdata(entry[name])
            assert nxdata.is_valid, (name, nxdata.issues)
            energy = nxdata.axes[-1]
            assert energy.name.endswith(f"/{name}/energy"), energy.name
            assert np.allclose(energy[()], expected) and _units(energy) == "keV"
            assert np.array_equal(entry[f"{name}/channel"][()], channels.astype(int))  # the index stays
        assert _text(entry["one_element"].attrs["signal"]) == "simu1_det1"
        # the statistics keep the units of the table (the configuration gave none)
        assert _units(entry["instrument/simu1_det3/trigger_count_rate"]) == "hertz"
    assert nexus_errors(state.file) == []


def test_configured_units_win_over_the_table(make_harness):
    cfg = "detectors:\n  simu1:deadtime_det0: {units: percent}\n"
    harness = make_harness(beamline=yaml.safe_load(cfg))
    state = _write(harness, harness.recording("10_loopscan_mca"))
    with read_file(state.file) as f:
        inst = f[f"{state.entries[0]}/instrument"]
        assert _units(inst["simu1_det0/fractional_dead_time"]) == "percent"
        assert _units(inst["simu1_det1/fractional_dead_time"]) == "1"


def _scan_folder(harness, rec) -> str:
    path = rec.identity.get("path") or str(harness.base / harness.session / f"{harness.session}_nexus.h5")
    return os.path.join(os.path.dirname(path), f"scan{rec.number:04d}")


def test_mosca_statistics_have_units_and_its_spectra_a_plot(harness):
    det = MoscaDetector()
    rec = harness.recording("03_ascan")
    rec = add_mosca(rec, det, _scan_folder(harness, rec))
    with hidden_plugins("mosca"):
        state = _write(harness, rec)
    entry = f"{rec.number}.1"
    with read_file(state.file) as f:
        inst = f[f"{entry}/instrument"]
        for alias in det.aliases:
            grp = inst[f"{det.name}_det{alias:02d}"]
            assert {name: _units(grp[name]) for name in EXPECTED_UNITS} == EXPECTED_UNITS
            assert _text(grp["spectrum"].attrs["interpretation"]) == "spectrum"
        spectra = f[f"{entry}/spectra"]
        nxdata = NXdata(spectra)
        assert nxdata.is_valid, nxdata.issues
        assert nxdata.signal.shape == (6, det.channels)
        assert np.array_equal(spectra["channel"][()], np.arange(det.channels))
        assert np.array_equal(nxdata.signal[()], rec.mosca_spectra[det.spectrum_channel(det.aliases[0])])
        # the diodes still make the default plot
        assert _text(f[entry].attrs["default"]) == "plotselect"
    assert nexus_errors(state.file) == []
