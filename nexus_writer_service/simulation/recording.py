"""Scans recorded from a real BLISS session, as data the replayer can publish.

The fixtures (``fixtures/real_bliss_2.2.1``) were dumped from Redis while a real
BLISS 2.2.1 ran; they are shipped with the package so that the demo works on a
machine without BLISS. A recording keeps what a publisher needs: identity, the
scan info at each state, the state sequence, and every stream's definition and
data.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "real_bliss_2.2.1"

#: BLISS base path in the recordings; the replayer moves it under a folder of ours.
RECORDED_BASE_PATH = "/data/bliss"

_STATES = ("CREATED", "PREPARED", "STARTED", "STOPPED", "CLOSED")


@dataclass
class StreamRecording:
    name: str
    info: dict
    encoding: dict
    #: numpy array for numeric streams, list of JSON events otherwise
    data: Any
    #: for progress streams (a detector's status ticks, not one datum per point): the
    #: scan point with which each event is sent (non-decreasing); None = datum i with point i
    points: Any = None

    @property
    def is_numeric(self) -> bool:
        return self.encoding.get("type") == "numeric"

    @property
    def npoints(self) -> int:
        """Scan points this stream spans (its length, or the last scheduled point + 1)."""
        if self.points is None:
            return len(self.data)
        return int(self.points[-1]) + 1 if len(self.points) else 0

    def at_points(self, start: int, stop: int) -> Any:
        """The data sent with scan points [start, stop)."""
        if self.points is None:
            return self.data[start:stop]
        lo, hi = (int(i) for i in np.searchsorted(self.points, [start, stop], side="left"))
        return self.data[lo:hi]


@dataclass
class ScanRecording:
    label: str
    identity: dict
    #: scan info as published at CREATED, PREPARED and CLOSED (only those may differ)
    info_created: dict
    info_prepared: dict
    info_final: dict
    states: list[str]
    streams: list[StreamRecording] = field(default_factory=list)
    original_key: str = ""
    #: frames of simulated lima and lima2 detectors, by channel (lima: every frame taken,
    #: the files hold the first ``saved_points[channel]``; lima2: the frames in the files)
    lima_frames: dict = field(default_factory=dict)
    #: spectra of simulated MOSCA detectors, by channel: every point read, (points, channels);
    #: the files hold the first ``saved_points[channel]``
    mosca_spectra: dict = field(default_factory=dict)
    #: how many frames/spectra of a simulated detector's channel are in its files
    saved_points: dict = field(default_factory=dict)
    #: called by the publisher after the streams are sealed and before the scan closes
    #: (a Lima2 conductor writes its master file only once the acquisition is over)
    before_close: list[Callable[[], None]] = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.identity["number"]

    @property
    def npoints(self) -> int:
        """Points the scan takes: its longest numeric stream sent point by point
        (progress streams, whose events are ticks, do not count)."""
        return max((len(s.data) for s in self.streams if s.is_numeric and s.points is None), default=0)

    def stream(self, name: str) -> StreamRecording:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)

    def copy(self) -> "ScanRecording":
        return copy.deepcopy(self)


def _apply_diff(info: dict, diff: dict) -> dict:
    info = dict(info)
    info.update(diff.get("added", {}))
    info.update(diff.get("changed", {}))
    for key in diff.get("removed", []):
        info.pop(key, None)
    return info


def _stream_data(raw: dict) -> Any:
    if raw.get("encoding", {}).get("type") != "numeric":
        return list(raw.get("raw_events", raw.get("data", [])))
    dtype = np.dtype(raw["encoding"]["dtype_str"])
    shape = tuple(raw["encoding"]["shape"])
    data = raw.get("data", [])
    if -1 in shape:
        return [np.asarray(point, dtype=dtype) for point in data]
    # the recorder wrote NaN/inf as strings
    arr = np.asarray(data, dtype=float if dtype.kind == "f" else None)
    return arr.astype(dtype).reshape((-1,) + shape)


def load_recording(path: str | Path) -> ScanRecording:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = FIXTURE_DIR / path
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    raw = json.loads(path.read_text())
    snapshots = raw.get("info_snapshots") or []
    by_state: dict[str, dict] = {}
    info = None
    for snap in snapshots:
        info = snap["info"] if "info" in snap else _apply_diff(info, snap.get("info_diff", {}))
        by_state[snap["state"]] = info
    final = raw["info"]
    first = by_state[snapshots[0]["state"]] if snapshots else final
    created = by_state.get("CREATED", first)
    prepared = by_state.get("PREPARED", by_state.get("STARTED", created))
    states = [entry["state"] for entry in raw.get("state_history", [])] or list(_STATES)
    streams = [
        StreamRecording(s["name"], dict(s["info"]), dict(s["encoding"]), _stream_data(s))
        for s in raw["streams"]
    ]
    return ScanRecording(
        label=path.stem,
        identity=dict(raw["identity"]),
        info_created=created,
        info_prepared=prepared,
        info_final=final,
        states=states,
        streams=streams,
        original_key=raw.get("key", ""),
    )


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURE_DIR.glob("[0-9]*.json"))


def _replace_strings(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, dict):
        return {k: _replace_strings(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_strings(v, old, new) for v in obj]
    return obj


def relocate(rec: ScanRecording, base_path: str | Path, session: str | None = None,
             number: int | None = None) -> ScanRecording:
    """The same scan as if BLISS had saved under ``base_path``, in ``session``, as scan ``number``.

    Tests write into temporary folders and renumber scans so that many replays can
    share one file, exactly as successive BLISS scans do.
    """
    rec = rec.copy()
    base = str(base_path).rstrip("/")

    def fix_info(info: dict) -> dict:
        info = _replace_strings(info, RECORDED_BASE_PATH, base)
        if number is not None:
            info["scan_nb"] = number
            name = info.get("name", "")
            prefix = "_" if name.startswith("_") else ""
            info["name"] = f"{prefix}{number}_{name.lstrip('_').split('_', 1)[-1]}" if name else name
        if session is not None:
            info["session_name"] = session
            for key in ("filename", "images_path"):
                if isinstance(info.get(key), str):
                    info[key] = info[key].replace(f"/{rec.identity['session']}/", f"/{session}/")
        return info

    old_number = rec.identity["number"]
    rec.info_created = fix_info(rec.info_created)
    rec.info_prepared = fix_info(rec.info_prepared)
    rec.info_final = fix_info(rec.info_final)
    identity = _replace_strings(rec.identity, RECORDED_BASE_PATH, base)
    if session is not None:
        if identity.get("path"):
            identity["path"] = identity["path"].replace(f"/{rec.identity['session']}/", f"/{session}/")
        identity["session"] = session
    if number is not None:
        identity["number"] = number
    rec.identity = identity
    for s in rec.streams:
        s.info = _replace_strings(s.info, RECORDED_BASE_PATH, base)
        if session is not None and "file_path" in s.info:
            s.info["file_path"] = identity.get("path") or s.info["file_path"]
        if number is not None and "data_path" in s.info:
            head, _, tail = s.info["data_path"].partition("/")
            if head.startswith(f"{old_number}."):
                s.info["data_path"] = f"{number}.{head.split('.', 1)[1]}/{tail}"
    return rec


def scaled(rec: ScanRecording, npoints: int | None = None, extra_counters: int = 0) -> ScanRecording:
    """A bigger version of a recorded scan: more points and/or more 0D counters.

    Points are the recorded values repeated; extra counters are copies of the
    first non-master 0D counter under new names, declared in scan info the way
    BLISS declares counters (channels, devices, acquisition chain).
    """
    rec = rec.copy()
    if npoints is not None:
        for s in rec.streams:
            if s.is_numeric and len(s.data) and s.points is None:
                reps = -(-npoints // len(s.data))
                s.data = np.concatenate([s.data] * reps)[:npoints]
        for info in (rec.info_created, rec.info_prepared, rec.info_final):
            if "npoints" in info:
                info["npoints"] = npoints
    if extra_counters:
        chain = next(iter(rec.info_final["acquisition_chain"].values()))
        masters = set(chain["master"]["scalars"])
        template = next(
            s for s in rec.streams
            if s.is_numeric and s.encoding["shape"] == [] and s.name not in masters
            and not s.name.startswith("timer:")
        )
        ctrl = "simulation_counter_controller"
        for i in range(extra_counters):
            name = f"{ctrl}:c{i:03d}"
            new = replace(template, name=name, info=dict(template.info), data=template.data * (1 + i))
            if "data_path" in new.info:
                head = new.info["data_path"].split("/", 1)[0]
                new.info["data_path"] = f"{head}/instrument/c{i:03d}/data"
            rec.streams.append(new)
        for info in (rec.info_created, rec.info_prepared, rec.info_final):
            dev = f"0:{ctrl}"
            names = [f"{ctrl}:c{i:03d}" for i in range(extra_counters)]
            info["devices"][dev] = {"name": ctrl, "channels": names, "metadata": {}}
            for i, name in enumerate(names):
                info["channels"][name] = {"device": dev, "display_name": f"c{i:03d}", "dim": 0}
            ch = next(iter(info["acquisition_chain"].values()))
            ch["scalars"] = list(ch["scalars"]) + names
            ch["devices"] = list(ch["devices"]) + [dev]
    return rec


def esrf_policy(rec: ScanRecording, root: str | Path, proposal: str, beamline: str,
                session_date: str, collection: str, dataset: str) -> ScanRecording:
    """The same scan saved under the ESRF data policy (one file per dataset).

    ``<root>/<proposal>/<beamline>/<session_date>/RAW_DATA/<collection>/
    <collection>_<dataset>/<collection>_<dataset>.h5``, as BLISS's ESRF scan saving does.
    """
    rec = rec.copy()
    name = f"{collection}_{dataset}"
    path = str(Path(root) / proposal / beamline / session_date / "RAW_DATA" / collection / name / f"{name}.h5")
    rec.identity.update(data_policy="ESRF", proposal=proposal, collection=collection,
                        dataset=dataset, path=path)
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        info["data_policy"] = "ESRF"
        info["filename"] = path
    for s in rec.streams:
        if "file_path" in s.info:
            s.info["file_path"] = path
    return rec
