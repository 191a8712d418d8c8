"""Frames (or spectra) that a detector saved in its own files: referenced, never copied.

Shared by the kinds whose data are in detector files (lima, lima2, mosca). HDF5
frames become a virtual dataset over the detector's files; frames in other formats
become HDF5 external raw storage when their byte layout allows it (EDF without
compression, absolute file names), and always a list of silx URLs, one per
frame. VDS and URL file names are relative to our file when the frames sit
below its folder, so a dataset folder that is moved keeps working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field as dc_field
from functools import lru_cache

import numpy as np
from ..h5map import (
    ExternalBinaryDataset,
    ExternalBinaryFile,
    SpaceSelection,
    VirtualDataset,
    VirtualSource,
)

from ..fillvalues import fill_value
from ..vds_mapping import VdsMapping
from ..channelplan import ChannelPlan
from ..nxnodes import attr_value, field, group, link
from ..scangrid import mesh_shape


@dataclass(frozen=True)
class FrameRef:
    """Where one frame is: what a URL to that single frame names."""

    #: the detector file's format ("HDF5", "EDF", ...)
    file_format: str
    path: str
    #: the dataset in an HDF5 file ("" otherwise)
    data_path: str
    #: the frame's index in its file
    index: int


@dataclass
class Frames:
    """What is known of one detector channel's frames (or spectra) at the end of the scan."""

    acquired: int
    dtype: str
    #: shape of one frame
    shape: tuple
    #: where the saved frames are: frames of the scan -> frames of a detector file
    mappings: list[VdsMapping] = dc_field(default_factory=list)
    #: the detector files' format ("HDF5", "EDF", ...; "" when none is known)
    file_format: str = ""
    #: (file path, byte offset, byte size) of each saved frame's raw data, when known
    raw: list | None = None
    #: extra axes of the detector's dataset between frame index and frame (Lima2: (1,))
    src_prefix: tuple = ()

    @property
    def saved(self) -> int:
        return sum(len(m) for m in self.mappings)

    @property
    def missing(self) -> int:
        return max(0, self.acquired - self.saved)


def mappings_of(refs: list[FrameRef]) -> list[VdsMapping]:
    """Frames ``0..len(refs)-1`` as mappings: one per run of frames stored one after the
    other in one file."""
    out, start = [], 0
    for i in range(1, len(refs) + 1):
        if i == len(refs) or (refs[i].path, refs[i].data_path, refs[i].index) != \
                (refs[i - 1].path, refs[i - 1].data_path, refs[i - 1].index + 1):
            out.append(VdsMapping.run(start, i - start, refs[start].path, refs[start].data_path, refs[start].index))
            start = i
    return out


def as_runs(mappings: list[VdsMapping]) -> list[VdsMapping]:
    """The mappings cut into runs (frames one after the other on both sides), in the order
    of the scan's frames: a strided mapping (a Lima2 receiver's) is many runs."""
    out = []
    for m in mappings:
        cut = np.flatnonzero((np.diff(m.frames) != 1) | (np.diff(m.src_frames) != 1)) + 1
        for frames, src in zip(np.split(m.frames, cut), np.split(m.src_frames, cut)):
            if len(frames):
                out.append(VdsMapping(frames, m.src_file, m.src_dataset, src, m.src_shape, m.frame_shape))
    return sorted(out, key=lambda run: int(run.frames[0]))


def is_hdf5(fmt: str) -> bool:
    return str(fmt).upper().startswith("HDF5")


@lru_cache(maxsize=1024)
def relative(path: str, file_dir: str) -> str:
    # cached: every frame names its file, thousands of frames share a few files
    rel = os.path.relpath(path, file_dir) if file_dir else path
    return path if rel.startswith("..") else rel


def uri(ref: FrameRef, file_dir: str) -> str:
    path = relative(ref.path, file_dir)
    if is_hdf5(ref.file_format):
        return f"silx:{path}?path={ref.data_path}&slice={ref.index}"
    return f"fabio:{path}?slice={ref.index}"


def uris(frames: Frames, file_dir: str) -> list[str]:
    """``uri`` of every saved frame, in the scan's order; the part naming the file is made
    once per mapping (100k frames)."""
    out = []
    for run in as_runs(frames.mappings):
        prefix = uri(FrameRef(frames.file_format, run.src_file, run.src_dataset, 0), file_dir).rsplit("=", 1)[0]
        out.extend(f"{prefix}={i}" for i in run.src_frames.tolist())
    return out


def frames_vds(frames: Frames, file_dir: str, mesh: tuple[int, int] | None = None,
               interpretation: str = "image") -> VirtualDataset:
    """All saved frames as one virtual dataset, optionally in the mesh's (slow, fast) shape.

    Frames of any dimension (images, spectra); room is made for every acquired frame,
    those never saved read as the fill value.
    """
    n = frames.acquired if mesh is None else mesh[0] * mesh[1]
    return runs_vds(as_runs(frames.mappings), n, frames.dtype, frames.shape, file_dir, mesh, interpretation, frames.src_prefix)


def runs_vds(runs: list[VdsMapping], n: int, dtype: str, shape: tuple, file_dir: str,
             mesh: tuple[int, int] | None = None, interpretation: str = "image",
             src_prefix: tuple = ()) -> VirtualDataset:
    """``frames_vds`` from runs of frames stored one after the other in one file
    (``VdsMapping.run``), for kinds that know their files' layout without a reference
    per frame (MOSCA: points per file)."""
    dims = [int(d) for d in shape]
    zeros = [0] * len(dims)
    pre = [int(d) for d in src_prefix]
    if mesh is not None:
        n = mesh[0] * mesh[1]
    sources = []
    for run in runs:
        if not len(run):
            continue
        start, count, path, data_path, index = (int(run.frames[0]), len(run), run.src_file, run.src_dataset,
                                                int(run.src_frames[0]))
        if (np.diff(run.frames) != 1).any() or (np.diff(run.src_frames) != 1).any():
            raise ValueError(f"not a run of frames: {path}")
        count = min(count, n - start)
        if count <= 0:
            continue
        src = relative(path, file_dir)
        if mesh is None:
            pieces = [(start, count, index)]
        else:  # split at mesh line ends: one source per (partial) line
            pieces, i = [], start
            while i < start + count:
                k = min(start + count - i, mesh[1] - i % mesh[1])
                pieces.append((i, k, index + i - start))
                i += k
        for first, k, src_index in pieces:
            if mesh is None:
                vspace = SpaceSelection(start=[first, *zeros], count=[k, *dims])
            else:
                vspace = SpaceSelection(start=[first // mesh[1], first % mesh[1], *zeros], count=[1, k, *dims])
            sources.append(VirtualSource(vspace=vspace, src_file=src, src_dataset=data_path,
                                         src_space=SpaceSelection(start=[src_index, *[0] * len(pre), *zeros],
                                                                  count=[k, *pre, *dims])))
    full = [n, *dims] if mesh is None else [mesh[0], mesh[1], *dims]
    return VirtualDataset(dtype=np.dtype(dtype).str, shape=full, virtual_sources=sources,
                          attributes={"interpretation": interpretation,
                                      "fill_value": attr_value(fill_value(dtype))})


def frames_external(frames: Frames, file_dir: str) -> ExternalBinaryDataset | None:
    if frames.raw is None or len(frames.raw) != frames.saved or frames.missing:
        return None
    # absolute: HDF5 resolves relative external files against the reader's working
    # directory (unlike VDS sources, which it also looks up beside the file)
    files = [ExternalBinaryFile(name=os.path.abspath(p), offset=int(o), size=int(s)) for p, o, s in frames.raw]
    return ExternalBinaryDataset(dtype=np.dtype(frames.dtype).str, shape=[frames.saved, *frames.shape],
                                 files=files, attributes={"interpretation": "image"})


def frame_nodes(entry: str, ch: ChannelPlan, frames: Frames, file_dir: str, info: dict,
                extra: dict | None = None, data=None, with_uris: bool = True) -> tuple[dict, tuple | None]:
    """(entry-relative nodes, image plot) for one detector's frames in its files.

    The detector group (data, one URL per frame unless ``with_uris`` is False, counts,
    format), its measurement link, and an ``images`` plot (in the mesh's shape for a
    mesh). ``data``: the frames' dataset when the kind built it itself.
    """
    det = group("NXdetector", dict(extra or {}))
    fmt = frames.file_format
    if data is not None:
        det.children["data"] = data
    elif frames.mappings and is_hdf5(fmt):
        det.children["data"] = frames_vds(frames, file_dir)
    elif frames.mappings:
        external = frames_external(frames, file_dir)
        if external is not None:
            det.children["data"] = external
    if with_uris:
        det.children["frame_uris"] = field(uris(frames, file_dir) or [""])
    det.children["frames_acquired"] = field(frames.acquired)
    det.children["frames_saved"] = field(frames.saved)
    if fmt:
        det.children["file_format"] = field(str(fmt))
    nodes = {f"instrument/{ch.group}": det}
    if "data" not in det.children:
        return nodes, None
    target = f"/{entry}/instrument/{ch.group}/data"
    nodes[f"measurement/{ch.short_name}"] = link(target)
    mesh = mesh_shape(info)
    if mesh and is_hdf5(fmt) and frames.saved:
        signal = frames_vds(frames, file_dir, mesh)
    else:
        signal = link(target)
    return nodes, (ch.short_name, signal)
