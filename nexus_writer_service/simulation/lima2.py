"""A Lima2 detector for tests and the demo: receiver files, master file, lima2 stream.

Lima2 splits the frames of one acquisition over several receivers, each writing its
own HDF5 files ``{base}/{prefix}_{rank}_{idx:05d}.h5``: round robin over the
receivers in the conductor's ``ordering`` (identity: frame ``i`` goes to receiver
``i % n``; any permutation of the ranks), or dynamically (each frame to whichever
receiver is free; the receivers then store each frame's global index, ``frame_idx``,
beside the frames). Once the acquisition is over the
conductor writes ``{base}/{prefix}_master.h5``, a virtual dataset over the
receivers' files in frame order (lima2-client 4.3.2,
``lima2/conductor/processing/master_file.py``). BLISS publishes, per frame
channel, a stream of uint32 "frames processed" counts, one per reading tick
(repeats included), whose info names the conductor and the master file
(blissdata-lima2 2.0.2 ``Lima2Stream.make_definition``); the frames never
transit through Redis.

This module writes such files and adds such a stream to a recorded scan. Sparse
frames (lima2's SMX/XPCS processings) are written as lima2 writes them:
``data/{index, intensity, frame_ptr}`` in a single receiver's files.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import h5py
import hdf5plugin
import numpy as np

from ..transport.blissdata_api import NumericStreamEncoder, StreamDefinition
from .recording import ScanRecording, StreamRecording

#: what BLISS's lima2 stream info says (``Lima2Stream.PROTOCOL_VERSION``)
PROTOCOL_VERSION = 2
#: the lima2-client release whose master file layout is imitated
LIMA2_CLIENT_VERSION = "4.3.2"


@dataclass
class Lima2Detector:
    """One lima2 detector and how its processing saves one frame channel."""

    name: str = "lima2_simulator"
    #: one frame: (height, width)
    shape: tuple = (8, 10)
    dtype: str = "uint16"
    receivers: int = 2
    #: per receiver (lima2's ``nb_frames_per_file``; its default is 50)
    frames_per_file: int = 2
    #: sparse frames (``data/{index, intensity, frame_ptr}``, one receiver only)
    sparse: bool = False
    #: lima2's ``nb_dimensions`` (BLISS default ``dim_3d_or_4d``: a 1-channel frame is
    #: saved and announced 2-D; ``dim_4d`` keeps the channel axis)
    nb_dimensions: str = "dim_3d_or_4d"
    nx_entry_name: str = "entry_0000"
    nx_instrument_name: str = "instrument"
    #: bitshuffle+LZ4 as lima2 saves by default; "none" for plain chunks
    compression: str = "bshuf_lz4"
    #: saving disabled: no files, ``master_file`` null, BLISS marks the channel ``no_saving``
    saving: bool = True
    #: lima2's acquisition id (a new uuid1 per ``add_lima2`` when None)
    acq_uuid: str | None = None
    #: where BLISS says the conductor is; nothing listens on port 1, so the installed
    #: plugin cannot reach it (a BrokenPluginStream, as when the conductor is gone)
    conductor_hostname: str = "localhost"
    conductor_port: int = 1
    #: how frames are dealt: "identity" (round robin, rank order), "permuted" (round
    #: robin, ranks in reverse order) or "dynamic" (a seeded random receiver per frame;
    #: the receivers store ``frame_idx``)
    ordering: str = "identity"

    def __post_init__(self) -> None:
        if self.sparse and self.receivers != 1:
            raise ValueError("lima2 writes sparse frames from a single receiver only")
        if self.ordering not in ("identity", "permuted", "dynamic"):
            raise ValueError(f"unknown ordering {self.ordering!r}")

    @property
    def source(self) -> str:
        """The frame source (BLISS counter) name: ``frame`` or ``sparse_frame``."""
        return "sparse_frame" if self.sparse else "frame"

    @property
    def channel(self) -> str:
        return f"{self.name}:{self.source}"

    @property
    def filename_prefix(self) -> str:
        """BLISS's image prefix ``{img_acq_device}_`` followed by the channel's short name."""
        return f"{self.name}_{self.source}"

    @property
    def data_path(self) -> str:
        """Where receivers and master hold the frames (no leading slash, as lima2 says it)."""
        return f"{self.nx_entry_name}/{self.nx_instrument_name}/{self.name}/data"

    @property
    def frame_shape(self) -> tuple:
        """One frame as announced in the stream info and saved by the receivers."""
        if self.nb_dimensions == "dim_4d":
            return (1,) + tuple(self.shape)
        return tuple(self.shape)

    def receiver_file(self, base: str, rank: int, index: int) -> str:
        return os.path.join(base, f"{self.filename_prefix}_{rank}_{index:05d}.h5")

    def master_file(self, base: str) -> str:
        return os.path.join(base, f"{self.filename_prefix}_master.h5")


def frames_at(det: Lima2Detector, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """The frames of these global indices, as the detector took them (dense, even for
    sparse frames). Deterministic and distinct: dense frame i holds i*1000 + pixel index
    (in ``dtype``); sparse frame i has 1 + i % 4 lit pixels."""
    indices = np.asarray(indices, dtype=np.int64)
    npix = int(np.prod(det.shape))
    if not det.sparse:
        values = indices[:, None] * 1000 + np.arange(npix)[None, :]
        return values.astype(det.dtype).reshape((len(indices),) + tuple(det.shape))
    out = np.zeros((len(indices), npix), dtype=det.dtype)
    for row, i in enumerate(indices):
        for k in range(1 + int(i) % 4):
            out[row, (int(i) * 7 + k * 13) % npix] = i * 10 + k + 1
    return out.reshape((len(indices),) + tuple(det.shape))


def frames(det: Lima2Detector, n: int) -> np.ndarray:
    """Frames 0..n-1 (what ``add_lima2`` keeps in ``rec.lima_frames``)."""
    return frames_at(det, np.arange(n))


def owners(det: Lima2Detector, nframes: int) -> np.ndarray:
    """The receiver rank of each frame 0..nframes-1, as ``det.ordering`` deals them."""
    turn = np.arange(nframes) % det.receivers
    if det.ordering == "identity":
        return turn
    if det.ordering == "permuted":
        return det.receivers - 1 - turn
    return np.random.default_rng(12345).integers(0, det.receivers, size=nframes)


def _compression(det: Lima2Detector) -> dict:
    if det.compression == "none":
        return {}
    return dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))


def _nexus_groups(f: h5py.File, det: Lima2Detector) -> h5py.Group:
    f.attrs["NX_class"] = "NXroot"
    entry = f.require_group(det.nx_entry_name)
    entry.attrs["NX_class"] = "NXentry"
    inst = entry.require_group(det.nx_instrument_name)
    inst.attrs["NX_class"] = "NXinstrument"
    group = inst.require_group(det.name)
    group.attrs["NX_class"] = "NXdetector"
    return group


def receiver_frames(det: Lima2Detector, nframes: int, rank: int, index: int) -> np.ndarray:
    """Global indices of the frames in file ``index`` of receiver ``rank``."""
    if det.ordering == "identity":  # (no array of every frame: big benchmarks)
        mine = np.arange(rank, nframes, det.receivers)
    else:
        mine = np.flatnonzero(owners(det, nframes) == rank)
    return mine[index * det.frames_per_file:(index + 1) * det.frames_per_file]


def _files_per_receiver(det: Lima2Detector, nframes: int, rank: int) -> int:
    if det.ordering == "identity":
        count = len(range(rank, nframes, det.receivers))
    else:
        count = int((owners(det, nframes) == rank).sum())
    return -(-count // det.frames_per_file)


def write_receiver_files(det: Lima2Detector, nframes: int, base: str) -> list[str]:
    """Each receiver's files for frames 0..nframes-1 (dense); returns the paths written.

    Frames are made file by file: memory stays flat however many frames there are.
    """
    os.makedirs(base, exist_ok=True)
    paths = []
    for rank in range(det.receivers):
        for index in range(_files_per_receiver(det, nframes, rank)):
            taken = receiver_frames(det, nframes, rank, index)
            chunk = frames_at(det, taken).reshape((-1,) + det.frame_shape)
            path = det.receiver_file(base, rank, index)
            with h5py.File(path, "w") as f:
                group = _nexus_groups(f, det)
                group.create_dataset("data", data=chunk, chunks=(1,) + det.frame_shape, **_compression(det))
                if det.ordering == "dynamic":
                    group.create_dataset("frame_idx", data=taken.astype(np.uint32))
            paths.append(path)
    return paths


def write_sparse_files(det: Lima2Detector, nframes: int, base: str) -> list[str]:
    """The single receiver's sparse files: per file ``index`` (flat pixel, uint32),
    ``intensity`` and ``frame_ptr`` (uint64, frames in the file + 1, from 0)."""
    os.makedirs(base, exist_ok=True)
    paths = []
    for index in range(_files_per_receiver(det, nframes, 0)):
        chunk = frames_at(det, receiver_frames(det, nframes, 0, index)).reshape(-1, int(np.prod(det.shape)))
        idx = [np.flatnonzero(frame).astype(np.uint32) for frame in chunk]
        ptr = np.concatenate([[0], np.cumsum([len(i) for i in idx])]).astype(np.uint64)
        path = det.receiver_file(base, 0, index)
        with h5py.File(path, "w") as f:
            data = _nexus_groups(f, det).create_group("data")
            data.create_dataset("index", data=np.concatenate(idx).astype(np.uint32))
            data.create_dataset("intensity", data=np.concatenate([fr[i] for fr, i in zip(chunk, idx)]).astype(det.dtype))
            data.create_dataset("frame_ptr", data=ptr)
        paths.append(path)
    return paths


def _params(det: Lima2Detector, base: str, npoints: int) -> dict:
    """The acquisition/processing parameters BLISS sends (and dumps at the scan's end)."""
    saving = {
        "enabled": det.saving, "base_path": base, "filename_prefix": det.filename_prefix,
        "file_exists_policy": "abort", "nb_frames_per_file": det.frames_per_file,
        "nx_entry_name": det.nx_entry_name, "nx_instrument_name": det.nx_instrument_name,
        "nx_detector_name": det.name, "nb_dimensions": det.nb_dimensions,
        "compression": det.compression,
    }
    return {
        "acq_params": {"acq": {"nb_frames": npoints, "expo_time": 0.1, "trigger_mode": "internal"}},
        "recv_params": {"nb_receivers": det.receivers},
        "proc_params": {"class_name": "LimaProcessingSmx" if det.sparse else "LimaProcessingLegacy",
                        "saving_sparse" if det.sparse else "saving": saving},
    }


def _write_recursive(group: h5py.Group, name: str, value: Any) -> None:
    if isinstance(value, (dict, list)):
        sub = group.create_group(name)
        sub.attrs["NX_class"] = "NXcollection"
        items = value.items() if isinstance(value, dict) else ((str(i), v) for i, v in enumerate(value))
        for key, val in items:
            _write_recursive(sub, key, val)
    else:
        group[name] = value


def _master_metadata(f: h5py.File, det: Lima2Detector, params: dict, sparse: bool) -> None:
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = det.nx_entry_name
    f.attrs["file_name"] = f.filename
    f.attrs["NeXus_release"] = "2025.11"
    f.attrs["creator"] = "Lima2.Conductor"
    f.attrs["creator_version"] = LIMA2_CLIENT_VERSION
    f.attrs["file_time"] = datetime.now(timezone.utc).isoformat()
    entry = f[det.nx_entry_name]
    entry.attrs["NX_class"] = "NXentry"
    entry["program_name"] = "Conductor.MasterFile.Sparse" if sparse else "Conductor.MasterFile.Dense"
    entry["program_name"].attrs["version"] = "1.0" if sparse else "2.0"
    inst = entry[det.nx_instrument_name]
    inst.attrs["NX_class"] = "NXinstrument"
    detector = inst[det.name]
    detector.attrs["NX_class"] = "NXdetector"
    if not sparse:
        entry.attrs["default"] = f"{det.nx_instrument_name}/{det.name}/plot"
        inst.attrs["default"] = f"{det.name}/plot"
        detector.attrs["default"] = "plot"
    dump = {"params": {"acquisition": params["acq_params"], "processing": params["proc_params"]},
            "detector_information": {"model": "Simulator", "plugin": "simulator"}}
    for key, value in dump.items():
        _write_recursive(detector, key, value)
    if sparse:
        detector["data"].attrs["NX_class"] = "NXdata"
    else:
        plot = detector["plot"]
        plot.attrs["NX_class"] = "NXdata"
        plot.attrs["signal"] = "data"


def write_master_file(det: Lima2Detector, nframes: int, base: str, params: dict) -> str:
    """The conductor's master file over the receivers' files (after the acquisition).

    Dense: one VDS in frame order, sources named by bare file name (the master sits
    beside them) and declared ``(n, 1, H, W)``, the layout ``(n, H, W)`` or
    ``(n, 1, H, W)`` per ``nb_dimensions``; ``measurement/data`` and ``plot/data`` are
    hard links. Sparse: VDSs ``index``/``intensity`` over the files (absolute paths, as
    lima2 names them there) and ``frame_ptr`` rebuilt for the whole acquisition.
    """
    path = det.master_file(base)
    height, width = det.shape
    with h5py.File(path, "w") as f:
        if det.sparse:
            _sparse_master(f, det, nframes, base)
        else:
            layout = h5py.VirtualLayout(shape=(nframes,) + det.frame_shape, dtype=det.dtype)
            for rank in range(det.receivers):
                for index in range(_files_per_receiver(det, nframes, rank)):
                    frames_in_file = receiver_frames(det, nframes, rank, index).astype(np.uint32)
                    name = os.path.basename(det.receiver_file(base, rank, index))
                    layout[frames_in_file] = h5py.VirtualSource(
                        name, det.data_path, shape=(len(frames_in_file), 1, height, width))
            dset = f.create_virtual_dataset(det.data_path, layout=layout)
            dset.attrs["interpretation"] = "image"
            measurement = f"{det.nx_entry_name}/measurement"
            f[f"{measurement}/data"] = f[det.data_path]
            f[measurement].attrs["NX_class"] = "NXcollection"
            f[f"{det.nx_entry_name}/{det.nx_instrument_name}/{det.name}/plot/data"] = f[det.data_path]
        _master_metadata(f, det, params, det.sparse)
    return path


def _sparse_master(f: h5py.File, det: Lima2Detector, nframes: int, base: str) -> None:
    nfiles = -(-nframes // det.frames_per_file)
    ptrs, sources, hits = [], [], 0
    for index in range(nfiles):
        path = det.receiver_file(base, 0, index)
        with h5py.File(path, "r") as src:
            ptr = src[f"{det.data_path}/frame_ptr"][()].astype(np.uint64)
        n = int(ptr[-1])
        ptrs.append(ptr[:-1] + np.uint64(hits))
        sources.append((slice(hits, hits + n), path, n))
        hits += n
    frame_ptr = np.concatenate(ptrs + [np.array([hits], dtype=np.uint64)])
    index_layout = h5py.VirtualLayout(shape=(hits,), dtype=np.uint32)
    intensity_layout = h5py.VirtualLayout(shape=(hits,), dtype=det.dtype)
    for where, path, n in sources:
        index_layout[where] = h5py.VirtualSource(path, f"{det.data_path}/index", shape=(n,))
        intensity_layout[where] = h5py.VirtualSource(path, f"{det.data_path}/intensity", shape=(n,))
    f.create_virtual_dataset(f"{det.data_path}/index", layout=index_layout)
    f.create_virtual_dataset(f"{det.data_path}/intensity", layout=intensity_layout)
    f.create_dataset(f"{det.data_path}/frame_ptr", data=frame_ptr)
    measurement = f"{det.nx_entry_name}/measurement"
    f[f"{measurement}/data"] = f[det.data_path]
    f[measurement].attrs["NX_class"] = "NXcollection"


def stand_in_definition(name: str, source_name: str, conductor_hostname: str, conductor_port: int,
                        acq_uuid: str, master_file: Sequence[str] | None, dtype: Any,
                        shape: Sequence[int]) -> StreamDefinition:
    """The definition ``Lima2Stream.make_definition`` makes, without the plugin installed."""
    info = {
        "plugin": "lima2",
        "dtype": np.dtype(dtype).name,
        "shape": list(shape),
        "protocol_version": PROTOCOL_VERSION,
        "acq_uuid": acq_uuid,
        "source_name": source_name,
        "conductor_hostname": conductor_hostname,
        "conductor_port": conductor_port,
        "master_file": list(master_file) if master_file is not None else None,
    }
    return StreamDefinition(name, info, NumericStreamEncoder(np.uint32))


def stream_definition(**kwargs: Any) -> StreamDefinition:
    """BLISS's definition: the plugin's own when blissdata-lima2 is installed, else the stand-in."""
    try:
        from blissdata_lima2 import Lima2Stream  # optional: the blissdata-lima2 plugin
    except ImportError:
        return stand_in_definition(**kwargs)
    return Lima2Stream.make_definition(**kwargs)


def progress_events(npoints: int, nframes: int) -> tuple[np.ndarray, np.ndarray]:
    """BLISS's lima2 reading loop: (frames processed, scan point) per tick.

    Processing lags acquisition by one frame; every third tick sees no new frame
    (a repeat); after the acquisition the loop's last tick and its final status
    both say the total.
    """
    counts, points = [], []
    for i in range(npoints):
        done = min(i, nframes)
        counts.append(done)
        points.append(i)
        if i % 3 == 2:
            counts.append(done)
            points.append(i)
    last = max(npoints - 1, 0)
    counts += [nframes, nframes]
    points += [last, last]
    return np.asarray(counts, dtype=np.uint32), np.asarray(points, dtype=np.int64)


def add_lima2(rec: ScanRecording, det: Lima2Detector, folder: str, *,
              saved: int | None = None, keep_frames: bool = True) -> ScanRecording:
    """``rec`` with a lima2 detector taking one frame per point of the scan.

    The receivers' files are written now; the master file is written by the
    publisher after the streams are sealed, just before the scan closes
    (``rec.before_close``). ``saved`` < number of points simulates a detector that
    stops early: only those frames exist (files, master, progress).

    Expected values: ``rec.lima_frames[det.channel]`` (the frames in the files, dense
    even for sparse frames; ``keep_frames=False`` for big benchmarks: ``frames_at``
    gives any frame again), ``rec.saved_points[det.channel]``.
    """
    rec = rec.copy()
    npoints = rec.npoints
    nframes = npoints if saved is None else min(saved, npoints)
    params = _params(det, folder, npoints)
    master = None
    if det.saving:
        (write_sparse_files if det.sparse else write_receiver_files)(det, nframes, folder)
        master = (det.master_file(folder), det.data_path)
        if nframes or not det.sparse:  # lima2 cannot make a sparse master without a file
            rec.before_close.append(lambda: write_master_file(det, nframes, folder, params))
    definition = stream_definition(
        name=det.channel, source_name=det.source, conductor_hostname=det.conductor_hostname,
        conductor_port=det.conductor_port, acq_uuid=det.acq_uuid or str(uuid.uuid1()), master_file=master,
        dtype=det.dtype, shape=det.frame_shape,
    )
    counts, points = progress_events(npoints, nframes)
    info = json.loads(json.dumps(definition.info))  # as Redis gives it back (tuples become lists)
    encoding = json.loads(json.dumps(definition.encoder.info()))
    rec.streams.append(StreamRecording(det.channel, info, encoding, counts, points=points))
    if keep_frames:
        rec.lima_frames[det.channel] = frames(det, nframes)
    rec.saved_points[det.channel] = nframes if det.saving else 0
    for stage, info in (("created", rec.info_created), ("prepared", rec.info_prepared), ("final", rec.info_final)):
        dev = f"3:{det.name}"
        # the controller's scan_metadata() at PREPARED (bliss/controllers/lima2/controller.py),
        # the acquisition's parameters added at the end
        camera = {"type": "lima2", "description": "Simulator, Generator",
                  "x_pixel_size": 75e-6, "y_pixel_size": 75e-6,
                  "x_pixel_size@units": "m", "y_pixel_size@units": "m"}
        info["devices"][dev] = {"name": det.name, "type": "lima2", "channels": [det.channel],
                                "metadata": {"created": {}, "prepared": camera,
                                             "final": {**camera, **params}}[stage]}
        # BLISS 2.4 records the channel before the shape is known: FrameCounter.shape (0, 0, 0),
        # hence dim 3 and no place in the chain's scalars/spectra/images (only len 0/1/2 go there)
        channel = {"device": dev, "display_name": det.source, "dim": 3, "file_only": False}
        if stage != "created" and not det.saving:
            channel["no_saving"] = True  # set with the streams, at prepare
        info["channels"][det.channel] = channel
        chain = next(iter(info["acquisition_chain"].values()))
        chain["devices"] = list(chain["devices"]) + [dev]
    return rec

