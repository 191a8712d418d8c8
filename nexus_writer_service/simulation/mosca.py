"""A MOSCA MCA for tests and the demo: MOSCA's spectra files, mosca streams.

MOSCA (the MCA server) saves the spectra itself, ``points_per_file`` points per
file ``{file_path}/{prefix}spectra_{NNNN}.h5``, one dataset per detector
``{data_path}/spectra_{NN:02d}`` of shape (points, channels) (mosca 2.0.5
``control/tasks/saving.py``). BLISS (bliss-mosca 2.0.6) publishes, per detector,
a stream ``{ctrl}:spectrum:spec_det{NN}`` of JSON statuses
``{last_read_index, last_saved_index}`` whose info says where the files are
(blissdata-mosca 2.0.5 ``MoscaStream.make_definition``); the spectra never
transit through Redis. Statistics (``{ctrl}:stat:{name}_det{NN}``, float64) and
ROIs (``{ctrl}:roi:{roi}_det{NN}``, int64) are ordinary numeric channels.

This module writes such files and adds such streams to a recorded scan.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import h5py
import hdf5plugin
import numpy as np

from ..transport.blissdata_api import JsonStreamEncoder, StreamDefinition
from .recording import ScanRecording, StreamRecording

#: what BLISS's mosca stream info says (``MoscaStream.PROTOCOL_VERSION``)
PROTOCOL_VERSION = 1
#: the statistics a XIA (FalconX, Mercury) MOSCA server returns, in its order
XIA_STATS = ("realtime", "trigger_livetime", "energy_livetime", "triggers", "events", "icr", "ocr", "deadtime")
#: the keys ``make_definition`` requires in ``saving``
SAVING_KEYS = frozenset({"file_path", "data_path", "file_format", "file_prefix", "points_per_file",
                         "saving_enabled", "enabled_detectors"})


@dataclass
class MoscaDetector:
    """One MOSCA controller (a BLISS ``McaController``) and its enabled detectors."""

    name: str = "mosca_simulator"
    #: enabled detector numbers (aliases); an int n means 0..n-1
    detectors: Any = 2
    #: spectrum size
    channels: int = 16
    dtype: str = "uint32"
    #: MOSCA's ``hdf5_points_per_file`` (its default is 10)
    points_per_file: int = 4
    stats: tuple = XIA_STATS
    #: (name, first channel, last channel), both included, applied to every detector
    rois: tuple = (("roi1", 2, 5),)
    server_url: str = "id00/mosca/simulator"
    acq_id: int = 1
    saving_enabled: bool = True

    @property
    def aliases(self) -> tuple:
        if isinstance(self.detectors, int):
            return tuple(range(self.detectors))
        return tuple(int(d) for d in self.detectors)

    @property
    def prefix(self) -> str:
        """BLISS's image prefix ``{img_acq_device}_``: MOSCA's ``hdf5_file_prefix``."""
        return f"{self.name}_"

    @property
    def data_path(self) -> str:
        """MOSCA's ``hdf5_group_path``, as bliss-mosca sets it (leading slash included)."""
        return f"/entry_0000/{self.name}/data"

    def spectrum_channel(self, det: int) -> str:
        return f"{self.name}:spectrum:spec_det{det:02d}"

    def stat_channel(self, stat: str, det: int) -> str:
        return f"{self.name}:stat:{stat}_det{det:02d}"

    def roi_channel(self, roi: str, det: int) -> str:
        return f"{self.name}:roi:{roi}_det{det:02d}"

    def spectra_file(self, folder: str, index: int) -> str:
        return os.path.join(folder, f"{self.prefix}spectra_{index:04d}.h5")


def spectra_at(det: MoscaDetector, alias: int, start: int, stop: int) -> np.ndarray:
    """Spectra of detector ``alias`` at points [start, stop): (points, channels).

    Deterministic and distinct per detector and point, made on demand: big benchmark
    scans need not keep them (``add_mosca(..., keep_spectra=False)``).
    """
    k = det.aliases.index(alias) + 1
    points = np.arange(start, stop, dtype=np.int64)[:, None]
    return ((np.arange(det.channels, dtype=np.int64)[None, :] * k + points * 7) % 1000).astype(det.dtype)


def statistics(det: MoscaDetector, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per point, the XIA statistics MOSCA computes (handel ``make_stats``) from the
    counts in each spectrum (``events``)."""
    npoints = len(counts)
    events = np.asarray(counts).astype(float)
    realtime = 0.1 + 0.001 * np.arange(npoints)
    trigger_livetime = realtime * 0.9
    triggers = np.floor(events * 1.1)
    icr = np.divide(triggers, trigger_livetime, out=np.zeros(npoints), where=trigger_livetime != 0)
    ocr = np.divide(events, realtime, out=np.zeros(npoints), where=realtime != 0)
    values = {
        "realtime": realtime, "trigger_livetime": trigger_livetime,
        "energy_livetime": np.divide(events, icr, out=np.zeros(npoints), where=icr != 0),
        "triggers": triggers, "events": events, "icr": icr, "ocr": ocr,
        "deadtime": 1 - np.divide(ocr, icr, out=np.ones(npoints), where=icr != 0),
    }
    return {name: values.get(name, np.zeros(npoints)).astype("float64") for name in det.stats}


def write_spectra_files(det: MoscaDetector, npoints: int, folder: str) -> list[str]:
    """MOSCA's files for points [0, npoints) of every detector, made file by file."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, npoints, det.points_per_file)):
        stop = min(start + det.points_per_file, npoints)
        path = det.spectra_file(folder, index)
        with h5py.File(path, "w", libver=("v110", "v114")) as f:
            for alias in det.aliases:
                f.create_dataset(f"{det.data_path}/spectra_{alias:02d}", data=spectra_at(det, alias, start, stop),
                                 maxshape=(det.points_per_file, det.channels), chunks=(1, det.channels),
                                 **hdf5plugin.Bitshuffle())
        paths.append(path)
    return paths


def stand_in_definition(name: str, detector: int, data_index: int, dtype: Any, shape: Sequence[int],
                        tango_url: str, acq_id: int, saving: dict | None = None,
                        info: dict | None = None) -> StreamDefinition:
    """The definition ``MoscaStream.make_definition`` makes, without the plugin installed."""
    info = dict(info or {})
    info.update(plugin="mosca", detector=detector, data_index=data_index,
                dtype=np.dtype(dtype).name, shape=list(shape))
    mosca_info = info.setdefault("mosca_info", {})
    mosca_info.update(server_url=tango_url, acq_id=acq_id, protocol_version=PROTOCOL_VERSION)
    if saving:
        if set(saving) != SAVING_KEYS:
            raise ValueError(f"mosca saving keys must be {sorted(SAVING_KEYS)}")
        mosca_info.update(saving)
    return StreamDefinition(name, info, JsonStreamEncoder())


def stream_definition(**kwargs: Any) -> StreamDefinition:
    """BLISS's definition: the plugin's own when blissdata-mosca is installed, else the stand-in."""
    try:
        from blissdata_mosca import MoscaStream  # optional: the blissdata-mosca plugin
    except ImportError:
        return stand_in_definition(**kwargs)
    return MoscaStream.make_definition(**kwargs)


def status_events(npoints: int, saved: int, points_per_file: int) -> list[dict]:
    """BLISS's mosca polling: one status per point read.

    MOSCA counts a point saved once its file is closed (full, or at the end of the
    acquisition); BLISS emits only when new points were read, so the last status
    can say fewer saved than the files finally hold.
    """
    events = []
    for i in range(npoints):
        read = i + 1
        in_closed_files = (read // points_per_file) * points_per_file
        events.append({"last_read_index": read - 1, "last_saved_index": min(in_closed_files, saved) - 1})
    return events


def add_mosca(rec: ScanRecording, det: MoscaDetector, folder: str, *,
              saved: int | None = None, keep_spectra: bool = True) -> ScanRecording:
    """``rec`` with a MOSCA MCA reading one spectrum per detector at each point.

    ``saved`` < number of points simulates a server that stopped saving: the files
    hold only those points, the statuses say so. Expected values, per spectrum
    channel: ``rec.mosca_spectra[ch]`` (every point read; not kept with
    ``keep_spectra=False``: ``spectra_at`` gives them again) and ``rec.saved_points[ch]``.
    """
    rec = rec.copy()
    npoints = rec.npoints
    saved = npoints if saved is None else min(saved, npoints)
    if not det.saving_enabled:
        saved = 0
    if det.saving_enabled:
        write_spectra_files(det, saved, folder)
    saving = {
        "points_per_file": det.points_per_file, "file_format": "hdf5" if det.saving_enabled else None,
        "file_path": folder, "file_prefix": det.prefix, "data_path": det.data_path,
        "saving_enabled": det.saving_enabled, "enabled_detectors": list(det.aliases),
    }
    names = []
    for index, alias in enumerate(det.aliases):
        name = det.spectrum_channel(alias)
        definition = stream_definition(name=name, detector=alias, data_index=index, dtype=det.dtype,
                                       shape=(det.channels,), tango_url=det.server_url,
                                       acq_id=det.acq_id, saving=saving)
        events = status_events(npoints, saved, det.points_per_file)
        rec.streams.append(StreamRecording(name, json.loads(json.dumps(definition.info)),
                                           definition.encoder.info(), events,
                                           points=np.arange(npoints)))
        if keep_spectra:
            rec.mosca_spectra[name] = spectra_at(det, alias, 0, npoints)
        rec.saved_points[name] = saved
        names.append(name)
    sums = {alias: _reduce(det, alias, npoints, lambda sp: sp.sum(axis=1, dtype=np.int64)) for alias in det.aliases}
    scalars = []
    for alias in det.aliases:
        for stat, values in statistics(det, sums[alias]).items():
            scalars.append(_numeric(rec, det.stat_channel(stat, alias), values))
    for roi, first, last in det.rois:
        for alias in det.aliases:
            values = _reduce(det, alias, npoints, lambda sp: sp[:, first:last + 1].sum(axis=1, dtype=np.int64))
            scalars.append(_numeric(rec, det.roi_channel(roi, alias), values))
    _declare(rec, det, names, scalars)
    return rec


def _reduce(det: MoscaDetector, alias: int, npoints: int, per_point) -> np.ndarray:
    """``per_point`` over the spectra, a block at a time (memory stays flat)."""
    block = max(1, 2**20 // det.channels)  # ~8 MB of int64 at a time
    parts = [per_point(spectra_at(det, alias, i, min(i + block, npoints))) for i in range(0, npoints, block)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _numeric(rec: ScanRecording, name: str, values: np.ndarray) -> str:
    dtype = np.dtype(values.dtype)
    rec.streams.append(StreamRecording(name, {"dtype": dtype.name, "shape": []},
                                       {"type": "numeric", "dtype_str": dtype.str, "shape": []}, values))
    return name


def _server_metadata(det: MoscaDetector, folder: str) -> dict:
    """What bliss-mosca adds to the device's metadata at the scan's end (the server's)."""
    return {
        "mosca": {"enabled_detectors": list(det.aliases)},
        "data": {
            "spectrum_size": det.channels, "spectrum_dtype": det.dtype, "stats_names": list(det.stats),
            "rois": {"n_rois": len(det.rois) * len(det.aliases)},
            "saving": {"directory": folder, "prefix": det.prefix, "points_per_file": det.points_per_file,
                       "hdf5_path": det.data_path, "use_swmr": False, "mode": "hdf5",
                       "enabled": det.saving_enabled},
        },
    }


def _declare(rec: ScanRecording, det: MoscaDetector, spectra_names: list[str], scalars: list[str]) -> None:
    """scan_info entries as BLISS makes them from the acquisition chain."""
    dev = f"4:{det.name}"
    folder = rec.stream(spectra_names[0]).info["mosca_info"]["file_path"] if spectra_names else ""
    for stage, info in (("created", rec.info_created), ("prepared", rec.info_prepared), ("final", rec.info_final)):
        metadata = {}
        if stage != "created":
            metadata["type"] = "mca"  # McaCounterController.scan_metadata()
        if stage == "final":
            metadata[det.name] = _server_metadata(det, folder)
        info["devices"][dev] = {"name": det.name, "type": "mosca", "channels": spectra_names + scalars,
                                "metadata": metadata}
        for name in spectra_names + scalars:
            info["channels"][name] = {"device": dev, "display_name": name.rsplit(":", 1)[1],
                                      "dim": 1 if name in spectra_names else 0}
        chain = next(iter(info["acquisition_chain"].values()))
        chain["spectra"] = list(chain.get("spectra", [])) + spectra_names
        chain["scalars"] = list(chain.get("scalars", [])) + scalars
        chain["devices"] = list(chain["devices"]) + [dev]
