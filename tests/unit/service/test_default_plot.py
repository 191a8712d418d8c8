"""One default-plot rule (``mapping.plots.default_signals``): the status page's live
plot (``service.plots.choose``) shows the signal of the file's default NXdata against
its axis, for every recorded scan (descriptions only: no Redis, no file)."""

from __future__ import annotations

import pytest

from nexus_writer_service.kinds import classify
from nexus_writer_service.mapping.layout import final_tree, plan_scan
from nexus_writer_service.service.plots import choose
from nexus_writer_service.simulation.recording import fixture_names, load_recording
from describing import describe

DIODE1 = "simulation_diode_sampling_controller:diode1"

#: fixture -> (signal stream, x stream or None) both pick; None: no 0D plot at all
EXPECTED = {
    "01_ct": (DIODE1, "timer:elapsed_time"),
    "03_ascan": (DIODE1, "axis:robx"),
    "04_a2scan": (DIODE1, "axis:robx"),
    "07_amesh": (DIODE1, None),               # a mesh: the file's plot is 2D, the page's the index
    "10_loopscan_mca": (DIODE1, "timer:elapsed_time"),  # the diode, not an MCA statistic
    "12_ct_mca": None,                        # only an MCA: the file plots its spectra
    "13_timescan": (DIODE1, "timer:elapsed_time"),
}


def _file_default(rec, desc):
    """(signal stream, x stream or None) of the entry's ``plotselect``, as the file has it;
    None when the entry has no 0D default plot."""
    plan = plan_scan(desc)
    entry = plan.entries[0]
    lengths = {s.name: len(s.data) for s in rec.streams}
    tree = final_tree(desc, entry, rec.info_final, lengths, "SUCCEEDED", [])
    plot = tree.children.get("plotselect")
    if plot is None or tree.attributes.get("default") != "plotselect":
        return None
    by_short = {c.short_name: c.stream for c in entry.channels}
    signal = by_short[str(plot.attributes["signal"].root)]
    axes = [str(a) for a in plot.attributes["axes"].root] if "axes" in plot.attributes else ["."]
    if len(axes) == 2:  # a mesh in its 2D shape: the page draws it against the point index
        return signal, None
    return signal, (by_short[axes[0]] if axes[0] != "." else None)


def _page(desc):
    signal, x, _, _ = choose(desc)
    return None if signal is None else (signal, x)


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_file_and_page_pick_the_expected_plot(fixture):
    rec = load_recording(fixture)
    desc = describe(rec)
    assert _file_default(rec, desc) == EXPECTED[fixture]
    assert _page(desc) == EXPECTED[fixture]


@pytest.mark.parametrize("fixture", fixture_names())
def test_file_and_page_agree_on_every_recorded_scan(fixture):
    rec = load_recording(fixture)
    desc = describe(rec)
    assert _page(desc) == _file_default(rec, desc)


def test_the_page_needs_a_classified_description():
    rec = load_recording("03_ascan")
    raw = describe(rec)
    unclassified = type(raw)(**{**raw.__dict__, "streams": [s.__class__(**{**s.__dict__, "kind": "", "traits": None})
                                                              for s in raw.streams]})
    with pytest.raises(ValueError, match="kinds.classify"):
        choose(unclassified)
    assert _page(classify(unclassified)) == (DIODE1, "axis:robx")
