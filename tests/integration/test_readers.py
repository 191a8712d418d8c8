"""Every entry opens on a real plot in the field's readers (issue 20 items 1, 5, 7).

Every fixture recorded from real BLISS (and MCA scans derived from them), written with
the writer's defaults, then read as scientists read them:

- silx (``silx.io.nxdata.get_default``, what ``silx view`` opens on) for the root and
  for each entry: a valid NXdata with the signal, axes and shape the scan implies
  (counters against the scanned motor, meshes in 2D, time scans against elapsed time,
  spectra against the MCA channel or the calibrated energy), values as published;
- nexusformat / NeXpy (``plottable_data``): the same NXdata;
- ewoksdata's ``iter_bliss_scan_data``: every counter, every point, equal to the file;
- plain h5py without hdf5plugin and with no filter plugin reachable: every dataset
  read, values equal to what h5py with every filter reads.

Scans without a point (failed before starting, under every end reason, and a failed
sequence without children) have no default plot, the file's root default skips them,
and no entry holds an empty group.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.simulation.recording import fixture_names
from nxvalidation import empty_groups, nexus_errors
from readers import default_plot, digests, ewoksdata_scan, read_without_plugins, root_default_plot

SEQUENCE = ["26_sequence", "27_sequence_child1", "28_sequence_child2"]
DIODE = "simulation_diode_sampling_controller:diode{}"

#: fixture -> (signal, axes, signal shape, signal stream, axis stream): what the scan implies
IMPLIED = {
    "02_sct": ("diode1", ["elapsed_time"], (1,), DIODE.format(1), "timer:elapsed_time"),
    "03_ascan": ("diode1", ["robx"], (6,), DIODE.format(1), "axis:robx"),
    "04_a2scan": ("diode1", ["robx"], (5,), DIODE.format(1), "axis:robx"),
    "05_dscan": ("diode1", ["robx"], (5,), DIODE.format(1), "axis:robx"),
    "07_amesh": ("diode1", ["roby", "robx"], (3, 4), DIODE.format(1), None),
    "10_loopscan_mca": ("diode1", ["elapsed_time"], (5,), DIODE.format(1), "timer:elapsed_time"),
    "13_timescan": ("diode1", ["elapsed_time"], (5,), DIODE.format(1), "timer:elapsed_time"),
    # BLISS's own plot of a lookupscan (scan_info "plots": x = elapsed_time), as Flint draws it
    "16_lookupscan": ("diode1", ["elapsed_time"], (3,), DIODE.format(1), "timer:elapsed_time"),
    "19_ascan_usermeta": ("diode1", ["robx"], (4,), DIODE.format(1), "axis:robx"),
    "20_ascan_ss_template": ("diode1", ["robx"], (3,), DIODE.format(1), "axis:robx"),
    "21_ascan_abort": ("diode1", ["robx"], (5,), DIODE.format(1), "axis:robx"),
    "23_ascan_failure": ("diode1", ["robx"], (3,), DIODE.format(1), "axis:robx"),
    "25_loopscan_stop": ("diode1", ["elapsed_time"], (10,), DIODE.format(1), "timer:elapsed_time"),
    "33_null_ascan": ("diode1", ["robx"], (6,), DIODE.format(1), "axis:robx"),
    "34_null_amesh": ("diode1", ["roby", "robx"], (2, 3), DIODE.format(1), None),
    "26_sequence": ("seq_counter", [None], (2,), "seq_counter", None),
    "27_sequence_child1": ("diode1", ["elapsed_time"], (3,), DIODE.format(1), "timer:elapsed_time"),
    "28_sequence_child2": ("diode2", ["robx"], (3,), DIODE.format(2), "axis:robx"),
}
SAVED = [n for n in fixture_names() if n not in SEQUENCE]


def _mca_only(harness, number: int):
    """10_loopscan_mca without its diodes: an MCA scan, its spectra the plot (as a real
    BLISS MCA scan without counters is)."""
    rec = harness.recording("10_loopscan_mca", number=number)
    rec.streams = [s for s in rec.streams if "diode" not in s.name]
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info["channels"] = {k: v for k, v in info["channels"].items() if "diode" not in k}
    return rec


def _emptied(rec, end_reason: str):
    """The scan as BLISS publishes one that ended before its first point."""
    for s in rec.streams:
        s.data = s.data[:0] if s.is_numeric else []
    rec.info_final["end_reason"] = end_reason
    return rec


def _check(path, entry, rec, implied):
    signal, axes, shape, signal_stream, axis_stream = implied
    plot = default_plot(path, entry)
    assert plot is not None, f"{entry} ({rec.name}) opens on no plot"
    assert (plot["signal"], plot["axes"], plot["shape"]) == (signal, axes, shape), (entry, plot)
    published = np.asarray(rec.stream(signal_stream).data)
    assert np.array_equal(plot["signal_values"].ravel(), published[: int(np.prod(shape))]), entry
    if axis_stream is not None:
        assert np.array_equal(plot["axis_values"][-1], np.asarray(rec.stream(axis_stream).data)[: shape[-1]])
    return plot


def test_every_fixture_opens_on_its_plot_in_silx_nexusformat_and_plain_h5py(harness):
    recs = {name: harness.recording(name) for name in SAVED}
    keys = {name: harness.publish(rec) for name, rec in recs.items()}
    parent, *children = [harness.recording(n) for n in SEQUENCE]
    seq_key, child_keys = harness.publish_sequence(parent, children)
    keys.update(zip(SEQUENCE, [seq_key, *child_keys]))
    recs.update(zip(SEQUENCE, [parent, *children]))
    states = harness.states(list(keys.values()), 120)
    by_name = {name: states[key] for name, key in keys.items()}
    assert {n for n, s in by_name.items() if s.status == "SKIPPED"} == \
        {n for n, r in recs.items() if r.info_final.get("save") is False}
    assert {s.status for n, s in by_name.items() if s.status != "SKIPPED"} == {"SUCCEEDED"}
    written = {n: s for n, s in by_name.items() if s.status == "SUCCEEDED"}
    assert sorted(written) == sorted(IMPLIED)
    for name, state in written.items():
        (entry,) = state.entries
        _check(state.file, entry, recs[name], IMPLIED[name])
        # ewoksdata (blissdata's dynamic reader): every counter of the scan, every point
        counters, frames, points = ewoksdata_scan(state.file, entry)
        assert (len(counters), frames) == (len([s for s in recs[name].streams if s.is_numeric]), []), name
        assert points == int(np.prod(IMPLIED[name][2])), name
    files = sorted({s.file for s in written.values()})
    assert len(files) == 3  # the session's data.h5, sampleA's (ss template), the 'null' writer's
    for path in files:
        # the file opens on the last scan finished with a plot (its note's date), on that
        # scan's plot, in both readers (scans are written side by side: the order they
        # finish in is the writer's)
        with read_file(path) as f:
            finished = {name: f[f"{name}/writer/date"][()].decode() for name in f}
        last = max(finished, key=finished.get)
        assert root_default_plot(path) == default_plot(path, last)["group"]
        with read_file(path) as f:
            assert f.attrs["required_filter_plugins"] == "none"
        assert empty_groups(path) == []
    # plain h5py, no plugin: every dataset, the same values
    plain, failed = read_without_plugins(files)
    assert failed == []
    assert plain == digests(files)
    spectra = [k for k in plain if k.endswith("/instrument/simu1_det0/spectrum")]
    assert len(spectra) == 1  # the MCA spectra were among them, deflated by the writer
    with read_file(files[0]) as f:
        assert f[spectra[0].partition("::")[2]].compression == "gzip"


def test_spectra_plot_against_the_channel_or_the_calibrated_energy(make_harness, tmp_path):
    """An MCA scan without counters opens on its spectra: counts against the MCA channel,
    or the energy where the beamline gives a calibration; labelled with units."""
    config = tmp_path / "beamline.yml"
    config.write_text("detectors:\n  simu1: {energy_calibration: [0.1, 0.02]}\n")
    for calibrated in (False, True):
        harness = make_harness(**({"beamline": {"detectors": {"simu1": {"energy_calibration": [0.1, 0.02]}}}}
                                  if calibrated else {}))
        rec = _mca_only(harness, 41)
        state = harness.state(harness.publish(rec))
        assert state.status == "SUCCEEDED", state
        axis = "energy" if calibrated else "channel"
        plot = default_plot(state.file, "41.1")
        assert (plot["group"], plot["signal"], plot["axes"], plot["shape"]) == \
            ("/41.1/spectra", "simu1_det0", [None, axis], (5, 1024))
        assert np.array_equal(plot["signal_values"], rec.stream("simu1:spectrum_det0").data)
        channels = np.arange(1024)
        assert np.allclose(plot["axis_values"][1], 0.1 + 0.02 * channels if calibrated else channels)
        with read_file(state.file) as f:
            signal = f["41.1/spectra/simu1_det0"]
            assert (signal.attrs["units"], signal.attrs["long_name"]) == ("counts", "simu1_det0 (counts)")
            assert f[f"41.1/spectra/{axis}"].attrs.get("units", "") == ("keV" if calibrated else "")
            assert f.attrs["default"] == "41.1"
        assert root_default_plot(state.file) == "/41.1/spectra"
        assert empty_groups(state.file) == []
        assert nexus_errors(state.file) == []
        harness.stop()


def test_with_the_opt_in_preset_the_entry_opens_on_what_every_reader_decodes(make_harness):
    """bitshuffle-LZ4 spectra need the plugin: an MCA scan then opens on its 0D statistics,
    which every reader reads, not on its spectra."""
    harness = make_harness(compression="bitshuffle-lz4")
    rec = _mca_only(harness, 42)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    plot = default_plot(state.file, "42.1")
    assert plot["group"] == "/42.1/plotselect" and plot["axes"] == ["elapsed_time"]
    assert plot["signal"] == "simu1_det0_triggers"  # the first statistic in counts
    plain, failed = read_without_plugins([state.file])
    assert sorted(f.partition("::")[2].partition(":")[0] for f in failed) == \
        [f"42.1/instrument/simu1_det{i}/spectrum" for i in range(4)]
    with read_file(state.file) as f:
        assert f["42.1"].attrs["default"] == "plotselect" and "spectra" in f["42.1"]
        plotselect = f["42.1/plotselect"]
        members = {plotselect.get(n, getlink=True).path.lstrip("/") for n in plotselect}
    # what the default plot shows (elapsed time and the 4 x 8 statistics) reads without a plugin
    assert len(members) == 1 + 4 * 8
    assert {f"{state.file}::{m}" for m in members} <= set(plain)


@pytest.mark.parametrize("end_reason", ["SUCCESS", "USER_ABORT", "FAILURE", "DEADLOCK"])
def test_a_scan_without_points_has_no_default_and_no_empty_group(harness, end_reason):
    first = harness.state(harness.publish(harness.recording("03_ascan", number=51)))
    assert first.status == "SUCCEEDED"
    for number, fixture in ((52, "03_ascan"), (53, "07_amesh"), (54, "10_loopscan_mca")):
        rec = _emptied(harness.recording(fixture, number=number), end_reason)
        state = harness.state(harness.publish(rec))
        assert state.status == "SUCCEEDED" and state.entries == [f"{number}.1"], state
        assert (state.end_reason, state.published) == (end_reason, 0)
        assert default_plot(state.file, f"{number}.1") is None
        with read_file(state.file) as f:
            entry = f[f"{number}.1"]
            assert entry["end_reason"][()].decode() == end_reason
            assert not [k for k in entry if entry[k].attrs.get("NX_class") in (b"NXdata", "NXdata")]
    # the file still opens on the last scan with data
    assert root_default_plot(state.file) == "/51.1/plotselect"
    assert empty_groups(state.file) == []
    assert nexus_errors(state.file) == []


def test_a_failed_sequence_has_no_empty_subscans_and_no_default(harness):
    harness.state(harness.publish(harness.recording("03_ascan", number=60)))
    parent = _emptied(harness.recording("26_sequence", number=61), "FAILURE")
    key, children = harness.publish_sequence(parent, [])
    state = harness.state(key)
    assert children == [] and state.status == "SUCCEEDED" and state.end_reason == "FAILURE", state
    with read_file(state.file) as f:
        entry = f["61.1"]
        assert "subscans" not in entry and "default" not in entry.attrs
        # what a failed sequence holds: its (empty) counter, metadata and the writer's note
        assert sorted(entry) == ["end_reason", "end_time", "instrument", "measurement", "start_time", "title",
                                 "writer"]
        assert entry["measurement/seq_counter"].shape == (0,)
    assert default_plot(state.file, "61.1") is None
    assert root_default_plot(state.file) == "/60.1/plotselect"
    assert empty_groups(state.file) == []


def test_a_scan_without_channels_keeps_no_empty_group(harness):
    """A scan that publishes no stream at all: the ``measurement`` group made at its start
    stays empty, and goes when the entry is finished (``layout.maybe_empty``)."""
    rec = harness.recording("03_ascan", number=70)
    rec.streams = []
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info["channels"] = {}
    state = harness.state(harness.publish(rec))
    assert (state.status, state.entries, state.published) == ("SUCCEEDED", ["70.1"], 0), state
    with read_file(state.file) as f:
        entry = f["70.1"]
        assert "measurement" not in entry and "default" not in entry.attrs
        assert sorted(entry["instrument"]) == ["positioners", "positioners_dial_end", "positioners_dial_start",
                                               "positioners_end", "positioners_start"]
    assert empty_groups(state.file) == []
    assert default_plot(state.file, "70.1") is None and root_default_plot(state.file) is None


def test_only_the_groups_the_start_can_leave_empty_are_looked_at(tmp_path):
    import h5py

    from nexus_writer_service.io.entries import prune_empty
    from nexus_writer_service.mapping.layout import maybe_empty, plan_scan
    from nexus_writer_service.simulation.recording import load_recording
    from describing import describe

    (entry,) = plan_scan(describe(load_recording("03_ascan"))).entries
    assert maybe_empty(entry) == ["measurement", "instrument"]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for name in ("1.1/measurement", "1.1/instrument/det", "1.1/other"):
            f.create_group(name)
        assert prune_empty(f, "1.1", ["instrument/det", "measurement", "instrument"]) == \
            ["1.1/instrument/det", "1.1/measurement", "1.1/instrument"]
        assert list(f["1.1"]) == ["other"]  # not a candidate: left as it is
