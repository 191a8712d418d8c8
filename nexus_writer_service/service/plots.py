"""The status page's small plots: which signal, how many points, and the picture.

A scan's plot is its default signal, the one its file plots first (``plotselect``):
the first 0D counter of the acquisition chain (a detector's own value before its
sub-fields), against the scanned motor, or the timer, or the point index (meshes:
the index, a line through a 2D raster would zig-zag). The choice is the file's own
rule (``mapping.plots.default_signals``) over the writer's channel planning, from the
scan's description in Redis.

A running scan shows its last ``LIVE_POINTS`` points, read again at each refresh of
the page; a finished scan its whole curve, decimated to at most ``MAX_POINTS`` (a
minimum and a maximum per bin, so peaks stay), made once and kept. The picture is an
inline SVG made here: no JavaScript, nothing fetched from the network.
"""

from __future__ import annotations

import html
import math
import threading
from collections import OrderedDict
from typing import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..descriptions import ScanDescription
from ..mapping.channels import plan_channels
from ..mapping.plots import default_signals
from ..states import FINAL_STATES

#: points drawn at most (a finished scan is decimated to this)
MAX_POINTS = 300
#: points of a running scan read at each refresh (its most recent ones)
LIVE_POINTS = 300
#: finished scans' plots kept (they never change)
KEEP = 256

WIDTH, HEIGHT = 300, 110
#: plot area: left, top, right, bottom margins (room for the value labels)
MARGINS = (58, 16, 8, 18)
#: colours the page's test looks for in screenshots (background of the plot area, curve)
BACKGROUND, CURVE = "#eef3fa", "#c0392b"


@dataclass
class Plot:
    """What the page draws, also given in ``/status.json`` (``scan["plot"]``)."""

    signal: str = ""
    x_name: str | None = None  # None: the point index
    index: list[int] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    #: points of the scan published so far (the plot may show fewer)
    total: int = 0
    live: bool = False
    #: why there is no curve (no 0D signal, data gone from Redis, ...)
    note: str | None = None


def choose(desc: ScanDescription) -> tuple[str | None, str | None, str, str | None]:
    """(signal stream, x stream or None, signal label, x label) of a scan's default plot:
    the file's own rule (``mapping.plots.default_signals``) over the channels the writer
    plans, from a classified description (``kinds.classify``, given by the app)."""
    channels, _ = plan_channels(desc)
    chosen = default_signals(desc.info, channels)
    if not chosen.counters:
        return None, None, "", None
    signal, x = chosen.counters[0], chosen.x
    if not signal.appends:  # a kind that writes its own values: nothing to read from Redis as points
        return None, None, "", None
    if x is not None and not (x.ndim == 0 and x.appends):
        x = None  # only points read from Redis are drawn: then against the index
    label = lambda c: c.display_name or c.stream  # noqa: E731
    return signal.stream, x.stream if x else None, label(signal), label(x) if x else None


def decimate(index: np.ndarray, x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS):
    """At most ``max_points`` points: per bin of consecutive points, its minimum and its
    maximum in their order (a plain stride would drop a narrow peak)."""
    n = len(y)
    if n <= max_points:
        return index, x, y
    bins = np.array_split(np.arange(n), max(1, max_points // 2))
    keep = []
    for b in bins:
        seg = y[b]
        finite = np.isfinite(seg)
        if not finite.any():
            keep.append(b[0])
            continue
        lo = b[np.nanargmin(np.where(finite, seg, np.nan))]
        hi = b[np.nanargmax(np.where(finite, seg, np.nan))]
        keep.extend(sorted({int(lo), int(hi)}))
    keep = np.asarray(keep)
    return index[keep], x[keep], y[keep]


class PlotSource:
    """Per scan state record, its plot (``Plot`` as a dict), from a ``PlotReader``.

    Called by the page's server for every scan it shows; cheap for finished scans
    (kept), a few Redis round trips for a running one. Never raises: a problem is
    the plot's ``note``.
    """

    def __init__(self, reader, classify: Callable[[ScanDescription], ScanDescription],
                 live_points: int = LIVE_POINTS, max_points: int = MAX_POINTS):
        self.reader = reader
        #: the stream kinds' classification (``kinds.classify``): given by the app, so that
        #: the service plans channels from traits without importing the kinds' registry
        self.classify = classify
        self.live_points = live_points
        self.max_points = max_points
        self._done: OrderedDict[str, dict] = OrderedDict()
        self._choice: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def __call__(self, scan: dict) -> dict | None:
        key, status = scan.get("key"), scan.get("status")
        if not isinstance(key, str) or status in ("SKIPPED", "PENDING", None):
            return None
        final = status in FINAL_STATES
        with self._lock:
            if key in self._done:
                return self._done[key]
            try:
                plot, failed = self._plot(key, final), False
            except Exception as exc:  # Redis away, a scan of another shape: said, not raised
                plot, failed = Plot(note=f"no plot: {type(exc).__name__}: {exc}"), True
            out = asdict(plot)
            if final and not failed:  # a passing problem is tried again at the next refresh
                self._done[key] = out
                while len(self._done) > KEEP:
                    self._done.popitem(last=False)
                self._choice.pop(key, None)
                self.reader.forget(key)
            return out

    def _plot(self, key: str, final: bool) -> Plot:
        if key not in self._choice:
            try:
                desc = self.reader.description(key)
            except LookupError as exc:
                return Plot(note=str(exc))
            if desc is None:
                return Plot(live=True, note="waiting for the scan's streams")
            self._choice[key] = choose(self.classify(desc))
        signal, xname, label, xlabel = self._choice[key]
        if signal is None:
            return Plot(live=not final, note="no 0D signal to plot")
        names = [signal] + ([xname] if xname else [])
        try:
            index, values = self.reader.points(key, names, self.max_points if final else self.live_points,
                                               whole=final)
        except LookupError as exc:
            return Plot(signal=label, x_name=xlabel, live=not final, note=str(exc))
        y = values[signal]
        x = values[xname] if xname else index.astype(float)
        total = int(index[-1]) + 1 if len(index) else 0
        index, x, y = decimate(index, x, y, self.max_points)
        return Plot(signal=label, x_name=xlabel, index=[int(i) for i in index], x=_floats(x), y=_floats(y),
                    total=total, live=not final, note=None if len(y) else "no point yet")


def _floats(values: np.ndarray) -> list:
    """JSON-able: NaN and infinities (fill values) become None."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def svg(plot: dict | None, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The plot as inline SVG; every text escaped (names come from Redis)."""
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    if not isinstance(plot, dict):
        return ""
    left, top, right, bottom = MARGINS
    w, h = width - left - right, height - top - bottom
    parts = [f"<svg class='plot' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='10'>",
             f"<rect class='area' x='{left}' y='{top}' width='{w}' height='{h}' fill='{BACKGROUND}' "
             "stroke='#99a'/>"]
    pts = [(a, b) for a, b in zip(plot.get("x") or [], plot.get("y") or [])
           if isinstance(a, (int, float)) and isinstance(b, (int, float))
           and math.isfinite(a) and math.isfinite(b)]
    total = plot.get("total") if isinstance(plot.get("total"), int) else 0
    what = e(plot.get("signal") or "")
    if plot.get("live") and pts:
        what += f" (last {len(pts)} of {total})" if len(pts) < total else " (live)"
    parts.append(f"<text x='{left}' y='11'>{what}</text>")
    if pts:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        sx = w / (x1 - x0) if x1 > x0 else 0.0
        sy = h / (y1 - y0) if y1 > y0 else 0.0
        coords = [(left + ((a - x0) * sx if sx else w / 2), top + h - ((b - y0) * sy if sy else h / 2))
                  for a, b in pts]
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in coords)
        parts.append(f"<polyline class='curve' points='{line}' fill='none' stroke='{CURVE}' "
                     "stroke-width='1.5' stroke-linejoin='round'/>")
        if len(coords) <= 40:  # few points: each one visible
            parts.extend(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='2' fill='{CURVE}'/>" for a, b in coords)
        parts.append(f"<text x='{left - 3}' y='{top + 8}' text-anchor='end'>{e(_fmt(y1))}</text>"
                     f"<text x='{left - 3}' y='{top + h}' text-anchor='end'>{e(_fmt(y0))}</text>"
                     f"<text x='{left}' y='{height - 5}'>{e(_fmt(x0))}</text>"
                     f"<text x='{left + w}' y='{height - 5}' text-anchor='end'>{e(_fmt(x1))}</text>"
                     f"<text x='{left + w / 2:.0f}' y='{height - 5}' text-anchor='middle'>"
                     f"{e(plot.get('x_name') or 'point')}</text>")
    else:
        parts.append(f"<text x='{left + w / 2:.0f}' y='{top + h / 2:.0f}' text-anchor='middle' fill='#666'>"
                     f"{e(plot.get('note') or 'no data')}</text>")
    parts.append("</svg>")
    return "".join(parts)
