"""The README's first command: the demo, as a user runs it (embedded Redis, replayed
session, the writer as its own process with the documented beamline configuration),
then its files read by the field's readers (issue 20 item 7)."""

from __future__ import annotations

import subprocess
import sys

import h5py
import pytest

from nxvalidation import empty_groups, nexus_errors
from readers import default_plot, digests, ewoksdata_scan, read_without_plugins, root_default_plot

#: entry -> (default NXdata, signal, axes, shape): what each demo scan opens on. The example
#: configuration's transmission curve (it against the scanned motor) where both diodes were
#: counted, else the counters against the motor or elapsed time; meshes in 2D
DEMO_PLOTS = {
    "data.h5": {
        "23.1": ("plotselect", "i0", ["elapsed_time"], (1,)),
        "24.1": ("transmission_curve", "it", ["robx"], (6,)),
        "25.1": ("transmission_curve", "it", ["robx"], (5,)),
        "28.1": ("transmission_curve", "it", ["roby", "robx"], (3, 4)),
        "31.1": ("plotselect", "i0", ["elapsed_time"], (5,)),
        "33.1": ("plotselect", "i0", ["elapsed_time"], (5,)),
        "37.1": ("transmission_curve", "it", ["robx"], (4,)),
        "39.1": ("transmission_curve", "it", ["robx"], (5,)),
        "43.1": ("plotselect", "i0", ["elapsed_time"], (10,)),
        "44.1": ("plotselect", "seq_counter", [None], (2,)),
        "45.1": ("plotselect", "i0", ["elapsed_time"], (3,)),
        "46.1": ("plotselect", "it", ["robx"], (3,)),
        "101.1": ("transmission_curve", "it", ["robx"], (6,)),
        "102.1": ("plotselect", "i0", ["elapsed_time"], (5,)),
    },
    "demo_session_nexus.h5": {
        "51.1": ("transmission_curve", "it", ["robx"], (6,)),
        "52.1": ("plotselect", "i0", ["roby", "robx"], (2, 3)),
    },
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = subprocess.run([sys.executable, "-m", "nexus_writer_service.apps.demo", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_writes_every_scan_with_the_example_configuration(demo):
    out, stdout = demo
    assert f"16 entries in 2 files under {out}: 16 SUCCEEDED" in stdout.splitlines()
    files = sorted(out.rglob("data.h5"))
    assert len(files) == 1
    with h5py.File(files[0], "r") as f:
        ascan = f["24.1"]
        assert ascan["instrument/source/name"][()] == b"ESRF"  # from the example configuration
        assert ascan["instrument/i0/type"][()] == b"diode"
        assert ascan.attrs["default"] == "transmission_curve"
        assert f["31.1"]["instrument/fluo_det0/spectrum"].shape[0] == 5
        assert list(f["28.1/transmission_curve/it"].shape) == [3, 4]  # the mesh, in its shape
        # today's detectors: Lima2 frames and MOSCA spectra referenced from their own files
        lima2 = f["101.1/instrument/lima2_simulator/data"]
        assert lima2.is_virtual and lima2.shape == (6, 8, 10) and lima2[5].any()
        assert f["101.1/images"].attrs["signal"] == "lima2_simulator"
        mosca = f["102.1/instrument/mosca_simulator_det00/spectrum"]
        assert mosca.is_virtual and mosca.shape == (5, 64) and mosca[4].any()
        assert "fractional_dead_time" in f["102.1/instrument/mosca_simulator_det00"]
    for path in out.rglob("*.h5"):
        assert nexus_errors(str(path)) == [], path
        assert empty_groups(str(path)) == [], path  # a group is written with content, or not at all


def test_every_demo_entry_opens_on_its_plot_in_silx_and_nexusformat(demo):
    out, _ = demo
    for name, plots in DEMO_PLOTS.items():
        (path,) = out.rglob(name)
        with h5py.File(path, "r", locking=False) as f:
            assert sorted(f) == sorted(plots)
        for entry, (group, signal, axes, shape) in plots.items():
            plot = default_plot(str(path), entry)
            assert (plot["group"], plot["signal"], plot["axes"], plot["shape"]) == \
                (f"/{entry}/{group}", signal, axes, shape), entry
        # the file opens on the plot of the scan finished last (its note's date)
        with h5py.File(path, "r", locking=False) as f:
            finished = {e: f[f"{e}/writer/date"][()].decode() for e in plots}
        last = max(finished, key=finished.get)
        assert root_default_plot(str(path)) == f"/{last}/{plots[last][0]}"


def test_plain_h5py_without_plugins_reads_the_demo_files(demo):
    """Everything the writer wrote itself reads without any filter plugin, values equal.
    The Lima2 frames and MOSCA spectra are the detectors' own files (bitshuffle-LZ4, as
    lima2 and MOSCA save them): our virtual datasets over them need what those files need."""
    out, _ = demo
    ours = sorted(str(p) for p in out.rglob("*.h5") if p.name in DEMO_PLOTS)
    plain, failed = read_without_plugins(ours)
    data = next(p for p in ours if p.endswith("/data.h5"))
    detectors = [f"{data}::101.1/instrument/lima2_simulator/data",
                 *(f"{data}::102.1/instrument/mosca_simulator_det0{i}/spectrum" for i in (0, 1))]
    assert sorted(line.partition(": ")[0] for line in failed) == detectors
    every = digests(ours)
    assert plain == {k: v for k, v in every.items() if k not in detectors}
    with h5py.File(data, "r", locking=False) as f:
        # where those virtual datasets read from: the detectors' files, and their filter
        sources = {vs.file_name for d in detectors for vs in f[d.partition("::")[2]].virtual_sources()}
    # two lima2 receivers, two files each; MOSCA's spectra in two files
    assert sorted(sources) == [*(f"scan0101/lima2_simulator_frame_{r}_0000{i}.h5" for r in (0, 1) for i in (0, 1)),
                               "scan0102/mosca_simulator_spectra_0000.h5", "scan0102/mosca_simulator_spectra_0001.h5"]
    for source in sources:
        with h5py.File(out / "demo_session" / source if not source.startswith("/") else source, "r") as src:
            filters = set()
            src.visititems(lambda n, o: filters.update(o._filters) if isinstance(o, h5py.Dataset) else None)
            assert filters == {"32008"}, (source, filters)  # bitshuffle (LZ4), h5py names it by its id


_TIMER = ["elapsed_time", "epoch"]
_MCA_STATS = ["elapsed_time", "event_count_rate", "events", "fractional_dead_time", "live_time",
              "trigger_count_rate", "trigger_live_time", "triggers"]


def _mca(det: str, rois: tuple = ()) -> list[str]:
    return [det, *(f"{det}_{s}" for s in sorted([*_MCA_STATS, *rois]))]


#: entry -> (counters, detectors with frames, points) ewoksdata's iter_bliss_scan_data returns:
#: every counter of measurement (spectra included), Lima2's frames, every point
DEMO_EWOKS = {
    "data.h5::23.1": ([*_TIMER, "i0", "it"], [], 1),
    "data.h5::24.1": ([*_TIMER, "i0", "it", "robx"], [], 6),
    "data.h5::25.1": ([*_TIMER, "i0", "it", "robx", "roby"], [], 5),
    "data.h5::28.1": ([*_TIMER, "i0", "it", "robx", "roby"], [], 12),
    "data.h5::31.1": ([*_TIMER, *(n for i in range(4) for n in _mca(f"fluo_det{i}")), "i0"], [], 5),
    "data.h5::33.1": ([*_TIMER, "i0", "it"], [], 5),
    "data.h5::37.1": ([*_TIMER, "i0", "it", "robx"], [], 4),
    "data.h5::39.1": ([*_TIMER, "i0", "it", "robx"], [], 5),
    "data.h5::43.1": ([*_TIMER, "i0"], [], 10),
    "data.h5::44.1": (["seq_counter"], [], 2),
    "data.h5::45.1": ([*_TIMER, "i0"], [], 3),
    "data.h5::46.1": ([*_TIMER, "it", "robx"], [], 3),
    "data.h5::101.1": ([*_TIMER, "i0", "it", "robx"], ["lima2_simulator"], 6),
    "data.h5::102.1": ([*_TIMER, "i0", "it", *(n for i in range(2) for n in _mca(f"mosca_simulator_det0{i}",
                                                                                ("roi1",)))], [], 5),
    "demo_session_nexus.h5::51.1": ([*_TIMER, "i0", "it", "robx"], [], 6),
    "demo_session_nexus.h5::52.1": ([*_TIMER, "i0", "robx", "roby"], [], 6),
}


def test_ewoksdata_reads_every_demo_entry_as_the_file_holds_it(demo):
    out, _ = demo
    seen = {}
    for name, plots in DEMO_PLOTS.items():
        (path,) = out.rglob(name)
        for entry in plots:
            seen[f"{name}::{entry}"] = ewoksdata_scan(str(path), entry)
    assert seen == DEMO_EWOKS
