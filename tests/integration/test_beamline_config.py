"""The beamline configuration (YAML): validation errors as scientists read them, and
what the writer makes of it in the file (with the scan's own metadata winning)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.descriptions import ScanDescription
from nexus_writer_service.mapping.layout import final_tree, plan_scan, start_tree
from nexus_writer_service.nxnodes import get, nx_class
from nexus_writer_service.metadata import config as beamline_config
from nexus_writer_service.metadata.config import ConfigError, load, load_raw, loads
from nexus_writer_service.simulation.recording import load_recording
from nxvalidation import nexus_errors
from describing import describe

EXAMPLES = Path(beamline_config.__file__).parent / "examples"
ID00 = EXAMPLES / "id00.yml"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yml")), ids=lambda p: p.name)
def test_documented_examples_are_valid(path):
    cfg = load(str(path))
    assert cfg.instrument["name"] == "ESRF-ID00"


BAD = [
    # (what, text, line, message)
    ("unknown key", "instrument:\n  name: x\nsampel:\n  name: y\n", 3,
     "sampel: unknown key (did you mean 'sample'? expected one of: instrument, sample, detectors,"),
    ("unknown nested key", "detectors:\n  diode1:\n    nme: i0\n", 3,
     "detectors.diode1.nme: unknown key (did you mean 'name'?"),
    ("wrong type", "plots:\n  p1:\n    signal: i0\n    axes: robx\n", 4,
     "plots.p1.axes: expected a valid list, got 'robx'"),
    ("bad unit", "instrument:\n  mono:\n    NX_class: NXmonochromator\n    energy:\n      value: 17\n"
                 "      units: Kev\n", 6,
     "instrument.mono.energy.units: 'Kev' is not a unit (did you mean 'keV'?)"),
    ("bad detector unit", "detectors:\n  diode1: {units: cnts}\n", 2,
     "detectors.diode1.units: 'cnts' is not a unit"),
    ("syntax error", "instrument:\n  name: [ESRF\n  short_name: id00\n", 3, "not valid YAML"),
    ("duplicate key", "sample:\n  name: a\n  name: b\n", 3, "key 'name' given twice (first on line 2)"),
    ("class not allowed", "instrument:\n  mono:\n    NX_class: NXmonochromater\n", 3,
     "instrument.mono.NX_class: NXmonochromater is not allowed here (did you mean NXmonochromator?)"),
    ("group without class", "instrument:\n  slits:\n    gap: 1\n", 2,
     "instrument.slits: a mapping must be a group (give NX_class"),
    ("empty field", "sample:\n  name:\n", 2, "sample.name: no value"),
    ("bad NeXus name", "plots:\n  my plot:\n    signal: i0\n", 2, "'my plot' is not a NeXus name"),
    ("missing key", "plots:\n  p1:\n    axes: [robx]\n", 2, "plots.p1.signal: required key is missing"),
    ("unknown technique", "technique: xrd\ntechniques:\n  xrf: {}\n", 1,
     "technique: 'xrd' is not one of techniques (xrf)"),
    ("unknown plot of a technique", "techniques:\n  xrf:\n    plots: [spectra]\n", 3,
     "techniques.xrf.plots[0]: 'spectra' is not one of plots (none defined)"),
    ("not a mapping", "- instrument\n", 1, "expected a mapping of instrument, sample,"),
    ("reserved name", "plots:\n  plotselect: {signal: i0}\n", 2,
     "plots.plotselect: 'plotselect' is a name the writer uses in every entry"),
    ("plot and technique clash", "plots:\n  xrf: {signal: i0}\ntechniques:\n  xrf: {plots: [xrf]}\n", 4,
     "techniques.xrf: 'xrf' is also a plot"),
]


@pytest.mark.parametrize("what,text,line,message", BAD, ids=[b[0] for b in BAD])
def test_a_wrong_file_gives_one_line_with_file_line_key_and_expectation(tmp_path, what, text, line, message):
    path = tmp_path / "id00.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load(str(path))
    error = str(exc.value)
    assert "\n" not in error
    assert error.startswith(f"{path}:{line}: "), error
    assert message in error, error


def test_writer_command_refuses_a_wrong_configuration_with_that_line(tmp_path):
    path = tmp_path / "beamline.yml"
    path.write_text("detectors:\n  diode1:\n    units: Kev\n")
    proc = subprocess.run([sys.executable, "-m", "nexus_writer_service.apps.session_writer", "s",
                           "--redis-url", "redis://localhost:1", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    errors = [line for line in proc.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert errors[0].endswith(f"{path}:3: detectors.diode1.units: 'Kev' is not a unit (did you mean 'keV'?)")


# -- mapping: pure, from recorded scans ------------------------------------------------

def _trees(fixture: str, cfg, info_update: dict | None = None):
    rec = load_recording(fixture)
    desc: ScanDescription = describe(rec)
    info = copy.deepcopy(rec.info_final)
    for d in (desc.info, info):
        d.setdefault("nexuswriter", {}).update(info_update or {})
    plan = plan_scan(desc, cfg)
    entry = plan.entries[0]
    lengths = {c.stream: len(rec.stream(c.stream).data) for c in entry.channels}
    warnings: list[str] = []
    return (plan, start_tree(desc, entry),
            final_tree(desc, entry, info, lengths, "SUCCEEDED", warnings, cfg), warnings)


def _value(node):
    """A plan dataset's or attribute's plain value."""
    value = getattr(node, "value", node)
    return getattr(value, "root", value)


def test_detectors_are_renamed_typed_and_given_units_bliss_did_not_publish():
    plan, start, _, _ = _trees("03_ascan", load(str(ID00)))
    i0 = plan.channel("simulation_diode_sampling_controller:diode1")
    assert (i0.group, i0.short_name, i0.units) == ("i0", "i0", "counts")
    assert plan.channel("axis:robx").group == "robx"  # not configured: BLISS naming
    assert _value(get(start, "instrument/i0/type")) == "diode"
    assert _value(get(start, "instrument/it/description")) == "transmitted flux"
    # the field keeps the name BLISS's data_path gives, and that path still leads there
    assert get(start, "measurement/it").target_path.endswith("/instrument/it/signal")
    assert get(start, "instrument/diode2/signal").target_path.endswith("/instrument/it/signal")


def test_a_controller_name_renames_every_element_of_a_multi_element_detector():
    plan, _, _, _ = _trees("10_loopscan_mca", load(str(ID00)))
    spectrum = plan.channel("simu1:spectrum_det2")
    assert (spectrum.group, spectrum.field) == ("fluo_det2", "spectrum")
    assert plan.channel("simu1:realtime_det0").path == "instrument/fluo_det0/elapsed_time"


def test_instrument_sample_positioners_plots_and_technique_from_the_configuration():
    _, _, final, warnings = _trees("03_ascan", load(str(ID00)))
    inst = final.children["instrument"]
    assert nx_class(get(inst, "source")) == "NXsource"
    energy = get(inst, "monochromator/energy")
    assert _value(energy) == 17.0 and _value(energy.attributes["units"]) == "keV"
    assert nx_class(get(inst, "monochromator/crystal")) == "NXcrystal"
    assert list(_value(get(inst, "monochromator/crystal/reflection"))) == [1, 1, 1]
    assert set(get(inst, "positioners_start").children) == {"robx", "roby"}
    sample = final.children["sample"]
    assert nx_class(sample) == "NXsample" and _value(get(sample, "name")) == "unknown sample"
    plot = final.children["transmission_curve"]
    assert _value(plot.attributes["signal"]) == "it" and list(_value(plot.attributes["axes"])) == ["robx"]
    assert _value(plot.children["title"]) == "transmission vs robx"
    assert "xrf_spectra" not in final.children  # needs MCA channels: not in this scan
    assert final.attributes["default"] == "transmission_curve"  # the technique's first plot
    sub = final.children["transmission"]
    assert nx_class(sub) == "NXsubentry" and _value(sub.children["title"]) == "transmission"
    assert list(_value(get(sub, "plots"))) == ["transmission_curve"]
    assert warnings == []


def test_the_scan_may_choose_another_technique_and_is_warned_of_what_it_lacks():
    _, _, final, warnings = _trees("03_ascan", load(str(ID00)), {"technique": "xrf"})
    assert nx_class(final.children["xrf"]) == "NXsubentry"
    assert "plots" not in final.children["xrf"].children  # its plot could not be made
    assert warnings == ["plot 'xrf_spectra' of technique 'xrf' not made: no channel 'fluo_det0', "
                        "'fluo_det1' in this scan"]
    assert final.attributes["default"] == "plotselect"
    _, _, final, warnings = _trees("10_loopscan_mca", load(str(ID00)), {"technique": "xrf"})
    assert warnings == []
    assert final.attributes["default"] == "xrf_spectra"
    assert _value(final.children["xrf_spectra"].attributes["signal"]) == "fluo_det0"
    _, _, final, warnings = _trees("03_ascan", load(str(ID00)), {"technique": "saxs"})
    assert warnings == ["technique 'saxs' is not configured (known: transmission, xrf)"]


def test_the_scans_own_metadata_wins_over_the_configuration():
    _, _, final, _ = _trees("19_ascan_usermeta", load(str(ID00)))
    inst = final.children["instrument"]
    # the scan said 12.4 keV: kept; the configuration adds what the scan does not say
    assert _value(get(inst, "monochromator/energy")) == 12.4
    assert nx_class(get(inst, "monochromator/crystal")) == "NXcrystal"
    sample = final.children["sample"]
    assert _value(get(sample, "name")) == "LaB6"
    assert _value(get(sample, "temperature")) == 295.0


def test_configurations_merge_in_layers_later_winning():
    writer = loads("instrument:\n  name: A\n  short_name: a\ntechnique: t\ntechniques:\n  t: {}\n").model_dump()
    session = {"instrument": {"name": "B"}}
    cfg = beamline_config.from_dict(beamline_config.merged(writer, session), "test")
    assert cfg.instrument == {"name": "B", "short_name": "a"} and cfg.technique == "t"


# -- the writer: configuration from its file, and from the session (scan_info) ---------------

def _with_nexuswriter(rec, **values):
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info.setdefault("nexuswriter", {}).update(copy.deepcopy(values))
    return rec


def test_writer_applies_its_file_and_the_sessions_configuration(make_harness):
    harness = make_harness(beamline=load_raw(str(ID00)), beamline_source=str(ID00))
    ascan = harness.recording("03_ascan")
    mca = _with_nexuswriter(harness.recording("10_loopscan_mca"), technique="xrf")
    # the session's own configuration (from Beacon, published per scan) over the writer's
    session = _with_nexuswriter(harness.recording("04_a2scan"),
                                configuration={"instrument": {"name": "ESRF-ID00B"},
                                               "detectors": {"diode1": {"name": "mon"}}})
    broken = _with_nexuswriter(harness.recording("05_dscan"),
                               configuration={"detectors": {"diode1": {"units": "Kev"}}})
    states = {rec.number: harness.state(harness.publish(rec)) for rec in (ascan, mca, session, broken)}
    assert [s.status for s in states.values()] == ["SUCCEEDED"] * 4
    path = states[ascan.number].file
    with read_file(path) as f:
        e = f[f"{ascan.number}.1"]
        assert e["instrument/name"][()] == b"ESRF-ID00"
        assert e["instrument/name"].attrs["short_name"] == "id00"
        assert e["instrument/source"].attrs["NX_class"] == "NXsource"
        assert e["instrument/monochromator/energy"].attrs["units"] == "keV"
        assert e["instrument/i0/data"].attrs["units"] == "counts"
        assert e["instrument/i0/type"][()] == b"diode"
        assert np.array_equal(e["measurement/i0"][()],
                              ascan.stream("simulation_diode_sampling_controller:diode1").data)
        assert e.attrs["default"] == "transmission_curve"
        assert e["transmission_curve"].attrs["signal"] == "it"
        assert np.array_equal(e["transmission_curve/robx"][()], ascan.stream("axis:robx").data)
        assert e["transmission"].attrs["NX_class"] == "NXsubentry"
        assert e["sample/name"][()] == b"unknown sample"
        m = f[f"{mca.number}.1"]
        assert m.attrs["default"] == "xrf_spectra"
        assert m["xrf_spectra/fluo_det0"].shape == mca.stream("simu1:spectrum_det0").data.shape
        assert list(m["xrf/plots"].asstr()[()]) == ["xrf_spectra"]
        assert m["instrument/fluo_det0/type"][()] == b"MCA"
        s = f[f"{session.number}.1"]
        assert s["instrument/name"][()] == b"ESRF-ID00B"
        assert "mon" in s["instrument"] and "i0" not in s["instrument"]
        assert s["instrument/source/name"][()] == b"ESRF"  # the writer's file still applies
        b = f[f"{broken.number}.1"]
        warnings = [w.decode() for w in b["writer/warnings"][()]]
        assert warnings == [
            "the session's configuration (scan_info nexuswriter.configuration): detectors.diode1.units: 'Kev' is "
            "not a unit (did you mean 'keV'?): ignored, using the writer's own configuration only",
            "plot 'transmission_curve' of technique 'transmission' not made: no channel 'it' in this scan"]
        assert b["instrument/i0/data"].attrs["units"] == "counts"  # the writer's file only
    assert nexus_errors(path) == []


def test_session_side_logs_one_error_line_and_publishes_nothing_for_a_wrong_file(tmp_path, caplog):
    """What a session's setup script gets from a wrong file (BLISS shows the log line)."""
    from nexus_writer_service.metadata.generators import _load_session_config

    path = tmp_path / "nexus_writer.yaml"
    path.write_text("instrument:\n  source:\n    NX_class: NXsource\n    energy: {value: 6, unit: GeV}\n")
    assert _load_session_config(str(path)) == {}
    # the generators' errors (a writer of an earlier test may still be logging under its own name)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name == "nexus_writer_service.session"]
    assert errors == [f"nexus writer configuration not used: {path}:4: instrument.source.energy.unit: "
                      "unknown key (a field has: value, units, long_name, description)"]
    path.write_text("sample:\n  name: x\n")
    assert _load_session_config(str(path)) == {"sample": {"name": "x"}}


def test_a_configured_plot_of_a_mesh_has_the_mesh_shape():
    _, _, final, warnings = _trees("07_amesh", load(str(ID00)))
    assert warnings == []
    plot = final.children["transmission_curve"]
    assert list(_value(plot.attributes["axes"])) == ["roby", "robx"]  # slow, fast
    assert list(plot.children["it"].shape) == [3, 4]  # 3 lines of 4 points (npoints2 x npoints1)
