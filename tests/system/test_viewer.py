"""Files that open everywhere, and ways to look at them on a fresh machine.

* ``nexus-writer show FILE``: the tree with NX classes, shapes, units, links and the
  default plot chain, with no Qt and no filter plugin;
* ``nexus-writer show FILE --png OUT`` and ``silx view FILE`` (the ``[viewer]`` extra):
  silx's own viewer draws our default plots, offscreen;
* with the opt-in bitshuffle-LZ4 preset, plain h5py without hdf5plugin reads every
  dataset but the spectra (the default, gzip, it reads whole: ``test_readers.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import read_file
from nexus_writer_service.simulation.recording import fixture_names
from readers import digests, read_without_plugins

BIN = Path(sys.executable).parent
SEQUENCE = ["26_sequence", "27_sequence_child1", "28_sequence_child2"]
QT = any(importlib.util.find_spec(b) for b in ("PySide6", "PyQt6", "PyQt5"))


def _qt_starts() -> str | None:
    """Why Qt cannot start offscreen here (None: it can). Its wheels need system libraries
    (libEGL, libGL...) that scripts/setup.sh installs when it runs as root."""
    if not QT:
        return "no Qt binding: pip install 'nexus_writer_service[viewer]'"
    proc = subprocess.run([sys.executable, "-c", "from silx.gui import qt; qt.QApplication([])"],
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
                          timeout=60)
    return None if proc.returncode == 0 else f"Qt cannot start offscreen: {proc.stderr.strip()[-300:]}"


QT_PROBLEM = _qt_starts()
needs_qt = pytest.mark.skipif(QT_PROBLEM is not None, reason=str(QT_PROBLEM))


def _run(*args, env=None, timeout=120):
    return subprocess.run([str(BIN / "nexus-writer"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def mca_file(harness):
    rec = harness.recording("10_loopscan_mca")
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    return rec, state.file


def test_show_prints_classes_shapes_units_links_and_the_default_plot(mca_file):
    rec, path = mca_file
    proc = _run("show", path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = [line.strip() for line in out.splitlines()]
    assert lines[:6] == [path, "required_filter_plugins: none", "/@default = '31.1'",
                         "/31.1@default = 'plotselect'",
                         "default plot: /31.1/plotselect signal='diode1' shape=(5,) interpretation=- "
                         "axes=['elapsed_time (s)']", ""]
    assert "31.1/  NXentry  @default=plotselect" in lines
    assert "simu1_det0/  NXdetector" in lines
    assert "live_time  5 float64  @units=s" in lines
    spectra = [line for line in lines if line.startswith("spectrum  ")]
    assert spectra == [f"spectrum  5x1024 uint32  @units=counts  @interpretation=spectrum  "
                       f"@long_name=simu1_det{i} (counts)  filters=shuffle+deflate" for i in range(4)]
    assert "diode1 -> /31.1/instrument/diode1/signal" in lines
    assert "title  scalar object = 'loopscan 5 0.01'" in lines
    # a group or dataset inside the file
    proc = _run("show", path, "31.1/spectra")
    assert proc.returncode == 0, proc.stderr
    assert "channel  1024 int64  @long_name=MCA channel" in [line.strip() for line in proc.stdout.splitlines()]


def test_show_needs_neither_qt_nor_the_filter_plugins(make_harness):
    """A file written with the opt-in bitshuffle-LZ4 preset, shown by a process without Qt,
    hdf5plugin or any filter plugin: the same text as here, where every filter is known."""
    from nexus_writer_service.apps.show import show

    harness = make_harness(compression="bitshuffle-lz4")
    state = harness.state(harness.publish(harness.recording("10_loopscan_mca")))
    assert state.status == "SUCCEEDED", state
    path = state.file
    script = ("import os, sys; os.environ['HDF5_PLUGIN_PATH'] = '/nonexistent'; "
              "sys.modules['hdf5plugin'] = None; sys.modules['PyQt6'] = sys.modules['PySide6'] = None; "
              "from nexus_writer_service.apps.status import main; code = main(['show', sys.argv[1]]); "
              "assert 'hdf5plugin' not in [m for m, v in sys.modules.items() if v is not None]; sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == show(path) + "\n"
    spectra = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("spectrum  ")]
    assert spectra == [f"spectrum  5x1024 uint32  @units=counts  @interpretation=spectrum  @long_name=simu1_det{i} "
                       f"(counts)  filters=bitshuffle; see https://github.com/kiyo-masui/bitshuffle" for i in range(4)]


def test_show_a_missing_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "nope.h5"
    proc = _run("show", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"nexus-writer show: {path}: [Errno 2] Unable to synchronously open file "
                                  f"(unable to open file: name = '{path}', errno = 2, error message = "
                                  f"'No such file or directory'"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


#: silx's data viewer draws a plot offscreen; prints what it drew as JSON
RENDER = (
    "import json, sys; from nexus_writer_service.apps.show import render; "
    "print(json.dumps(render(sys.argv[1], sys.argv[2], sys.argv[3] or None)))"
)


def _render(path: str, png: Path, inner: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-c", RENDER, path, str(png), inner], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _colours(png: Path) -> int:
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


@needs_qt
def test_silx_draws_the_default_plot_and_the_spectra_with_their_axis(mca_file, tmp_path):
    rec, path = mca_file
    drawn = _render(path, tmp_path / "default.png")
    assert drawn["view"] == "_NXdataCurveView" and list(drawn["curves"]) == ["diode1"]
    x, y = drawn["curves"]["diode1"]
    assert np.allclose(y, rec.stream("simulation_diode_sampling_controller:diode1").data)
    assert np.allclose(x, rec.stream("timer:elapsed_time").data)
    assert drawn["xlabel"] == "elapsed_time (s)"
    assert _colours(tmp_path / "default.png") > 20  # a drawn plot, not a blank widget
    drawn = _render(path, tmp_path / "spectra.png", "31.1/spectra")
    # each spectrum labelled with its units (the signals' @long_name)
    assert sorted(drawn["curves"]) == [f"simu1_det{i} (counts)" for i in range(4)]
    x, y = drawn["curves"]["simu1_det0 (counts)"]
    assert x == list(range(1024)) and drawn["xlabel"] == "MCA channel"
    assert np.array_equal(y, rec.stream("simu1:spectrum_det0").data[0])
    assert _colours(tmp_path / "spectra.png") > 20


@needs_qt
def test_show_png_from_the_command_line(mca_file, tmp_path):
    _, path = mca_file
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = _run("show", path, "--depth", "1", "--png", str(tmp_path / "plot.png"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"drawn by silx (_NXdataCurveView): diode1 -> {tmp_path / 'plot.png'}" in proc.stdout
    assert _colours(tmp_path / "plot.png") > 20


@needs_qt
def test_silx_view_opens_our_file_offscreen(mca_file):
    """The README's ``silx view FILE`` from the venv: it starts, opens the file and keeps
    running (no missing Qt binding, no traceback) until it is closed."""
    _, path = mca_file
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([str(BIN / "silx"), "view", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(8)
        assert proc.poll() is None, proc.communicate(timeout=5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err and "No Qt wrapper" not in err, err


def test_the_opt_in_preset_needs_the_plugin_for_the_spectra_only(make_harness):
    """Every file the fixture end-to-end tests write, written with ``--compression
    bitshuffle-lz4``: a process that never imports hdf5plugin (and finds no plugin) reads
    every dataset but the 4 MCA spectra, and the files say which need the plugin."""
    harness = make_harness(compression="bitshuffle-lz4")
    keys = [harness.publish(harness.recording(n)) for n in fixture_names() if n not in SEQUENCE]
    parent, *children = [harness.recording(n) for n in SEQUENCE]
    seq_key, child_keys = harness.publish_sequence(parent, children)
    states = harness.states([*keys, seq_key, *child_keys])
    files = sorted({s.file for s in states.values() if s.file})
    assert sorted(s.status for s in states.values()).count("SKIPPED") == 4
    assert {s.status for s in states.values()} == {"SUCCEEDED", "SKIPPED"}, states
    data = next(p for p in files if p.endswith("/data.h5"))
    assert len(files) == 3  # the session file, sampleA's, the 'null' writer's
    plugin = "bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)"
    for path in files:
        with read_file(path) as f:
            assert f.attrs["required_filter_plugins"] == (plugin if path == data else "none"), path
    plain, failed = read_without_plugins(files)
    spectra = [f"{data}::31.1/instrument/simu1_det{i}/spectrum" for i in range(4)]
    assert sorted(line.partition(": ")[0] for line in failed) == spectra
    every = digests(files)
    assert plain == {k: v for k, v in every.items() if k not in spectra}
    with read_file(data) as f:
        assert f["31.1/instrument/simu1_det0/spectrum"].shape == (5, 1024)
        assert f["31.1/writer/required_filter_plugins"][()].decode() == plugin
        assert f["24.1/writer/required_filter_plugins"][()].decode() == "none"
