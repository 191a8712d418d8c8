"""Did a writer write every published point, with the published values?

Writer-agnostic: ours and ESRF's name and place datasets differently, so each
published channel is found by content in its scan's entry (``<number>.1``): a
dataset with the channel's point shape whose first and last values match, then
compared whole with the regenerated data. Channels have distinct values
(``scenarios.generate``), so a match cannot be a neighbour's dataset.

A channel found shorter than published counts the missing points as dropped; one
not found at all drops all its points; one of the right length with other values
counts as bad. A writer with dropped or bad points gets no figure.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from nexus_writer_service.simulation.lima import frames
from nexus_writer_service.simulation.lima2 import Lima2Detector, frames_at
from nexus_writer_service.simulation.mosca import MoscaDetector, spectra_at

from .scenarios import LazyData, data_streams, lima_detector


def _expected(stream) -> np.ndarray:
    return stream.data.full() if isinstance(stream.data, LazyData) else np.asarray(stream.data)


def _datasets(entry: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    out = []
    entry.visititems(lambda name, obj: out.append((name, obj))
                     if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 else None)
    return out


class _Candidates:
    """Datasets of one entry by point shape, with their first and last points read once."""

    def __init__(self, entry: h5py.Group):
        self.by_shape: dict[tuple, list] = {}
        #: (point shape, first point) -> candidates: S8's 4000 channels would otherwise
        #: compare every channel with every dataset (16 million comparisons)
        self.by_first: dict[tuple, list] = {}
        for name, dset in _datasets(entry):
            n = dset.shape[0]
            try:
                head = dset[:min(n, 4)] if n else None
                tail = dset[n - 1] if n else None
            except (OSError, ValueError):  # unreadable (a VDS over missing files...)
                continue
            cand = (name, dset, head, tail)
            self.by_shape.setdefault(tuple(dset.shape[1:]), []).append(cand)
            if n:
                self.by_first.setdefault(_first_key(head), []).append(cand)

    def match(self, expected: np.ndarray) -> tuple[str | None, int, bool]:
        """(dataset path, points found, values equal) of the best candidate."""
        n = len(expected)
        best = (None, 0, False)
        # a dataset whose first point equals the channel's is one of those indexed under it,
        # unless the values compare equal with other bytes (-0.0, other dtypes): then all
        cands = self.by_first.get(_first_key(expected[:1])) if n else None
        for name, dset, head, tail in cands or self.by_shape.get(tuple(expected.shape[1:]), []):
            length = dset.shape[0]
            if not length or not np.array_equal(head, expected[:len(head)]):
                continue
            if length == n and np.array_equal(tail, expected[-1]):
                if np.array_equal(dset[()], expected):
                    return name, n, True
                best = (name, n, False)
            elif length < n and length > best[1]:
                equal = np.array_equal(dset[()], expected[:length])
                best = (name, length, equal)
        return best


def _first_key(points: np.ndarray) -> tuple:
    first = np.asarray(points[0])
    try:
        return first.shape, first.astype(np.float64).tobytes()
    except (TypeError, ValueError):
        return first.shape, first.tobytes()


def verify(path: str, recs: list) -> dict:
    """Check ``path`` against the published scans; returns counts and where each channel is."""
    result = {"path": path, "size_mb": 0.0, "points": 0, "dropped": 0, "bad": 0,
              "missing": [], "datasets": {}}
    if not os.path.exists(path):
        result["error"] = "no file"
    else:
        result["size_mb"] = os.path.getsize(path) / 2**20
    try:
        f = h5py.File(path, "r", locking=False) if os.path.exists(path) else None
    except OSError as e:
        f, result["error"] = None, f"cannot open: {e}"
    try:
        for rec in recs:
            entry_name = f"{rec.number}.1"
            entry = f.get(entry_name) if f is not None else None
            cands = _Candidates(entry) if isinstance(entry, h5py.Group) else None
            channels = [(s.name, _expected(s)) for s in data_streams(rec)]
            for s in rec.streams:
                if s.info.get("plugin") == "lima":
                    channels.append((s.name, frames(lima_detector(), _frames(rec))))
                elif s.info.get("plugin") in ("lima2", "mosca"):
                    channels.append((s.name, _detector_data(s, rec)))
            for name, expected in channels:
                n = len(expected)
                result["points"] += n
                where, found, equal = cands.match(expected) if cands else (None, 0, False)
                if where is None:
                    result["missing"].append(f"{entry_name}:{name}")
                else:
                    result["datasets"][f"{entry_name}:{name}"] = f"{entry_name}/{where}"
                result["dropped"] += n - found
                if where is not None and not equal:
                    result["bad"] += found
    finally:
        if f is not None:
            f.close()
    result["ok"] = not result["dropped"] and not result["bad"] and "error" not in result
    return result


def _detector_data(stream, rec) -> np.ndarray:
    """What a simulated Lima2/MOSCA detector saved in its files for this stream (regenerated)."""
    info, n = stream.info, rec.saved_points[stream.name]
    if info["plugin"] == "lima2":
        det = Lima2Detector(shape=tuple(info["shape"]), dtype=info["dtype"])
        return frames_at(det, np.arange(n))
    mosca = info["mosca_info"]
    det = MoscaDetector(detectors=list(mosca["enabled_detectors"]), channels=int(info["shape"][0]),
                        dtype=info["dtype"])
    return spectra_at(det, int(info["detector"]), 0, n)


def _frames(rec) -> int:
    return max(len(s.data) for s in rec.streams if s.is_numeric)


def describe(result: dict) -> str:
    if result["ok"]:
        return "ok"
    parts = []
    if "error" in result:
        parts.append(result["error"])
    if result["dropped"]:
        parts.append(f"dropped {result['dropped']} points")
    if result["bad"]:
        parts.append(f"{result['bad']} wrong values")
    if result["missing"]:
        parts.append(f"{len(result['missing'])} channels missing (e.g. {result['missing'][0]})")
    return "; ".join(parts)
