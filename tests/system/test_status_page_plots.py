"""The status page's pictures (issue 13 item 6): progress bars, warnings, small plots.

End to end: a ``NexusWriterService`` with its session writer, a long ascan published
point by point through a real Redis, and the page looked at in headless chromium
while the scan runs and after it finished. A plot counts when its SVG polyline has
many points over a real extent AND the screenshot's plot area holds the curve's
colour over most of its width (a blank or flat plot fails). The screenshots are
kept under the test's tmp folder (``page_running.png``, ``page_finished.png``).
"""

from __future__ import annotations

import re
import signal

import numpy as np
import pytest
from blissdata.redis_engine.store import DataStore

from nexus_writer_service.kinds import classify
from nexus_writer_service.service import plots
from nexus_writer_service.service.plots import PlotSource, choose, decimate, svg
from nexus_writer_service.service.web import render
from browser import chromium, get_json, wait
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.scans import ScanSource
from nexus_writer_service.transport.status import PlotReader
from conftest import start_service

SESSION = "plots_a"
DIODE = "simulation_diode_sampling_controller:diode1"
N = 240


def _look(url, tmp_path, name):
    """The page's DOM and a screenshot of it (numpy RGB array), both from one browser each."""
    dom = chromium(url, tmp_path / f"profile_{name}", "--dump-dom")
    assert "<h1>NeXus writers</h1>" in dom.stdout, dom.stderr[-2000:]
    png = tmp_path / f"{name}.png"
    shot = chromium(url, tmp_path / f"profile_{name}_shot", f"--screenshot={png}", "--window-size=1500,900")
    assert png.exists(), shot.stderr[-2000:]
    from PIL import Image

    return dom.stdout, np.asarray(Image.open(png).convert("RGB")).astype(int)


def _hex(colour):
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


def _plot_areas(image):
    """Bounding boxes (top, bottom, left, right) of the plot areas, top to bottom: the
    pixels of exactly the plots' background colour, grouped in bands of rows."""
    mask = (image == _hex(plots.BACKGROUND)).all(axis=2)
    rows = np.flatnonzero(mask.sum(axis=1) > 100)
    if not len(rows):
        return []
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    out = []
    for band in bands:
        cols = np.flatnonzero(mask[band].any(axis=0))
        out.append((band[0], band[-1], cols[0], cols[-1]))
    return out


def _curve_pixels(image, box):
    """Pixels near the curve's colour inside a plot area (anti-aliased edges included)."""
    top, bottom, left, right = box
    area = image[top:bottom + 1, left:right + 1]
    return (np.abs(area - _hex(plots.CURVE)).sum(axis=2) < 120), area


def _assert_drawn(image, box, what):
    """The area is not uniform and a curve crosses most of it, up and down."""
    curve, area = _curve_pixels(image, box)
    assert len(np.unique(area.reshape(-1, 3), axis=0)) > 3, f"{what}: plot area is uniform"
    cols = np.flatnonzero(curve.any(axis=0))
    rows = np.flatnonzero(curve.any(axis=1))
    height, width = curve.shape
    assert curve.sum() > 150, f"{what}: only {curve.sum()} curve pixels"
    assert len(cols) > 0.6 * width, f"{what}: the curve spans {len(cols)} of {width} columns"
    assert rows[-1] - rows[0] > 0.5 * height, f"{what}: the curve spans {rows[-1] - rows[0]} of {height} rows"


def _polylines(dom):
    """(title, [(x, y), ...]) of every plot of the page, in page order."""
    out = []
    for m in re.finditer(r"<svg class=\"plot\".*?</svg>", dom, re.S):
        title = re.search(r"<text[^>]*>([^<]*)</text>", m.group(0)).group(1)
        line = re.search(r"<polyline[^>]*points=\"([^\"]*)\"", m.group(0))
        pts = [tuple(float(v) for v in p.split(",")) for p in line.group(1).split()] if line else []
        out.append((title, pts))
    return out


def _long_ascan(tmp_path, number):
    """03_ascan stretched to N points: a peak on a slope, so a drawn curve has shape."""
    rec = relocate(load_recording("03_ascan"), tmp_path, session=SESSION, number=number)
    x = np.linspace(0.0, 1.0, N)
    rng = np.random.default_rng(7)
    values = {"axis:robx": x, DIODE: 100 * np.exp(-((x - 0.6) / 0.08) ** 2) + 20 * x + rng.normal(0, 1, N),
              "simulation_diode_sampling_controller:diode2": rng.normal(5, 1, N),
              "timer:elapsed_time": np.arange(N) * 0.01, "timer:epoch": 1.7e9 + np.arange(N) * 0.01}
    for s in rec.streams:
        s.data = values[s.name].astype(s.data.dtype)
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info["npoints"] = N
    return rec


@pytest.fixture
def service(redis_server, tmp_path):
    proc, url = start_service("--session", SESSION, "--redis-url", redis_server.url,
                             "--log-dir", str(tmp_path / "logs"), "--allowed-root", str(tmp_path))
    wait(lambda: get_json(url + "status.json")["sessions"][SESSION]["heartbeat"])
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == 0


def test_page_draws_running_and_finished_scans(service, redis_server, tmp_path):
    url = service
    ds = DataStore(redis_server.url)
    publish(ds, relocate(load_recording("03_ascan"), tmp_path, session=SESSION, number=1))
    wait(lambda: (s := get_json(url + "status.json")["sessions"][SESSION]["scans"]) and s[0]["status"] == "SUCCEEDED")

    pub = ScanPublisher(ds, _long_ascan(tmp_path, 2), batch_size=20).create().prepare().start()
    try:
        _look_while_running_then_finished(url, tmp_path, pub)
    except BaseException:
        pub.abandon()  # blissdata's sender threads would keep the test process alive
        raise


def _look_while_running_then_finished(url, tmp_path, pub):
    shown = []
    for stop in (100, 180):  # two moments of the running scan: the plot follows it
        pub.send_data(stop_after=stop, start_at=shown[-1] if shown else 0)
        pub.join()
        status = wait(lambda: (s := get_json(url + "status.json")["sessions"][SESSION]["scans"])
                       and s[0]["key"] == pub.key and max(s[0]["written"].values(), default=0) >= stop
                       and s[0]["plot"] and s[0]["plot"]["total"] >= stop and s)
        running = status[0]
        assert running["status"] == "WRITING" and running["expected"] == N
        assert running["plot"]["signal"] == "diode1" and running["plot"]["x_name"] == "robx"
        assert running["plot"]["live"] and running["plot"]["total"] == stop
        dom, image = _look(url, tmp_path, f"page_running_{stop}")
        shown.append(stop)
        (title, live), (title_done, done) = _polylines(dom)
        assert "diode1" in title and "diode1" in title_done
        assert len(live) == stop and len(done) == 6, (len(live), len(done))
        xs, ys = np.array(live).T
        assert np.ptp(xs) > 150 and np.ptp(ys) > 40  # drawn over the area, not a dot or a flat line
        # the progress bar: points written of the announced N
        bar = re.search(r"class=\"bar\"[^>]*>\s*<div style=\"width:\s*([\d.]+)%", dom)
        written = max(running["written"].values())
        assert bar and float(bar.group(1)) == pytest.approx(100 * written / N, abs=0.1), dom[:3000]
        assert f"{written} / {N}" in dom
        areas = _plot_areas(image)
        assert len(areas) == 2, areas
        _assert_drawn(image, areas[0], f"running scan at {stop} points")
        _assert_drawn(image, areas[1], "finished 6-point ascan")
    assert 'http-equiv="refresh"' in dom  # the browser reloads the page: the live plot moves

    pub.send_data(start_at=shown[-1])
    pub.end()
    status = wait(lambda: (s := get_json(url + "status.json")["sessions"][SESSION]["scans"])
                   and s[0]["status"] == "SUCCEEDED" and s)
    final = status[0]["plot"]
    assert not final["live"] and final["total"] == N and len(final["y"]) == N
    # the final curve is the published one, point for point (N <= MAX_POINTS: not decimated)
    assert final["y"] == pytest.approx(list(_long_ascan(tmp_path, 2).stream(DIODE).data))
    dom, image = _look(url, tmp_path, "page_finished")
    (_, whole), _ = _polylines(dom)
    assert len(whole) == N
    assert "bar done" in dom and f"{N} / {N}" in dom
    areas = _plot_areas(image)
    assert len(areas) == 2
    _assert_drawn(image, areas[0], "finished long ascan")
    _assert_drawn(image, areas[1], "finished 6-point ascan")
    # the check itself: the same screenshot with the curve painted over is a blank plot
    top, bottom, left, right = areas[0]
    blank = image.copy()
    blank[top + 1:bottom, left + 1:right] = _hex(plots.BACKGROUND)
    with pytest.raises(AssertionError, match="uniform|curve pixels"):
        _assert_drawn(blank, areas[0], "erased")


# -- without a browser ----------------------------------------------------------------


def _description(data_store, rec):
    key = publish(data_store, rec)
    source = ScanSource(data_store, key)
    source.load()
    return source.description()


@pytest.mark.parametrize("label, signal, x", [
    ("03_ascan", "diode1", "robx"),
    ("07_amesh", "diode1", None),  # a mesh: against the point index
    ("13_timescan", "diode1", "elapsed_time"),
    ("10_loopscan_mca", "diode1", "elapsed_time"),  # the diode, not an MCA statistic
])
def test_the_plotted_signal_is_the_files_default(data_store, tmp_path, label, signal, x):
    desc = _description(data_store, relocate(load_recording(label), tmp_path, session="plots_choice"))
    _, _, got_signal, got_x = choose(classify(desc))
    assert (got_signal, got_x) == (signal, x)


def test_decimation_keeps_peaks_and_bounds_points():
    n = 100_000
    y = np.zeros(n)
    y[54_321] = 9.0  # one narrow peak a stride would miss
    y[77_000] = -3.0
    index, x, yy = decimate(np.arange(n), np.arange(n, dtype=float), y, 300)
    assert len(yy) <= 300 and yy.max() == 9.0 and yy.min() == -3.0
    assert np.all(np.diff(index) > 0) and index[0] == 0
    assert list(x[yy == 9.0]) == [54_321.0]


def test_reads_are_bounded(redis_server, data_store, tmp_path, monkeypatch):
    """Past FULL_READ points a finished scan is sampled, never read whole; a running
    scan's read is its last points."""
    rec = _long_ascan(tmp_path, 5)
    key = publish(data_store, rec)
    reader = PlotReader(redis_server.url)
    monkeypatch.setattr(PlotReader, "FULL_READ", 50)
    index, values = reader.points(key, [DIODE], 30, whole=True)
    assert len(index) == 30 and index[0] == 0 and index[-1] == N - 1
    assert values[DIODE] == pytest.approx(rec.stream(DIODE).data[index])
    live_index, live = reader.points(key, [DIODE, "axis:robx"], 25, whole=False)
    assert list(live_index) == list(range(N - 25, N))
    assert live["axis:robx"] == pytest.approx(rec.stream("axis:robx").data[-25:])


def test_a_record_that_names_no_scan_gets_a_note_not_an_error(redis_server):
    source = PlotSource(PlotReader(redis_server.url), classify)
    plot = source({"key": "esc:<b>1</b>", "status": "WRITING"})
    assert plot["y"] == [] and "no scan" in plot["note"]
    assert source({"key": "x", "status": "SKIPPED"}) is None
    picture = svg(plot)
    assert "<b>" not in picture and "&lt;b&gt;1&lt;/b&gt;" in picture


def test_rendered_page_has_bars_warnings_and_escaped_plot_names():
    plot = {"signal": "<i>d</i>", "x_name": None, "x": [0.0, 1.0, 2.0], "y": [1.0, None, 3.0],
            "index": [0, 1, 2], "total": 3, "live": True, "note": None}
    page = render({"redis_url": "redis://h", "sessions": {"s": {"heartbeat": {"pid": 1}, "scans": [
        {"key": "k", "number": 3, "name": "ascan", "status": "WRITING", "written": {"a": 3, "b": 2},
         "expected": 12, "warnings": ["w<1>", "w2"], "plot": plot},
        {"key": "k2", "number": 4, "name": "loopscan", "status": "WRITING", "written": {"a": 7},
         "expected": None, "plot": None}]}}})
    assert "width:25.0%" in page and "3 / 12" in page and "7 points" in page
    assert "<li>w&lt;1&gt;</li><li>w2</li>" in page
    assert "&lt;i&gt;d&lt;/i&gt;" in page and "<i>d</i>" not in page
    # the missing (fill value) point is left out of the line, the others drawn
    assert re.search(r"<polyline[^>]*points='([^']*)'", page).group(1).count(",") == 2
