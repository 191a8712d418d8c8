"""The file opens on a real plot: the root ``@default`` names the last entry with data
worth plotting, never an empty one (issue 12, 5)."""

from __future__ import annotations

import numpy as np

from conftest import read_file


def _emptied(rec):
    """The scan as BLISS publishes one that failed before its first point."""
    rec = rec.copy()
    for s in rec.streams:
        s.data = s.data[:0] if s.is_numeric else []
    return rec


def test_a_scan_failed_before_starting_does_not_become_the_default(harness):
    first = harness.state(harness.publish(harness.recording("03_ascan", number=91)))
    assert first.status == "SUCCEEDED", first
    failed = _emptied(harness.recording("23_ascan_failure", number=92))
    state = harness.state(harness.publish(failed))
    assert state.entries == ["92.1"] and state.file == first.file
    with read_file(state.file) as f:
        assert f["92.1/end_reason"][()] == b"FAILURE"
        assert int(max(d[()] for d in f["92.1/writer/points"].values())) == 0
        assert f.attrs["default"] == "91.1"  # still the plot of the last scan with data
        entry = f[f.attrs["default"]]
        plot = entry[entry.attrs["default"]]
        assert len(plot[plot.attrs["signal"]]) == 6


def test_a_failed_scan_with_points_is_the_default(harness):
    harness.state(harness.publish(harness.recording("03_ascan", number=93)))
    state = harness.state(harness.publish(harness.recording("23_ascan_failure", number=94)))
    with read_file(state.file) as f:
        assert f.attrs["default"] == "94.1"
        entry = f["94.1"]
        plot = entry[entry.attrs["default"]]
        assert np.array_equal(plot[plot.attrs["signal"]][()],
                              harness.recording("23_ascan_failure").stream(
                                  "simulation_diode_sampling_controller:diode1").data)
