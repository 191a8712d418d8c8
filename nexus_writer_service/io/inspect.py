"""Reading what a detector wrote in its own files, for the kinds that reference them.

A kind asks (``kinds.FileQuery``) and gets plain facts back (``kinds.FileFacts``):
a dataset's shape and type, a virtual dataset's sources (a Lima2 master file), the
raw byte ranges of EDF frames. Files are opened read-only without HDF5 locking (the
detector may still write them) and closed at once; a file that cannot be read is
reported as missing, never raised.
"""

from __future__ import annotations

import glob
import logging
import os

import h5py
import numpy as np

from ..descriptions import FileFacts, FileQuery
from .edf import frame_layout
from .vds_layout import read_virtual_layout

_logger = logging.getLogger(__name__)


def answer(queries: list[FileQuery]) -> dict[FileQuery, list[FileFacts]]:
    """Facts for each query: one per file (a pattern can match several, in sorted order)."""
    out = {}
    for q in queries:
        paths = sorted(glob.glob(q.pattern)) if q.pattern else [q.path]
        out[q] = [_safe_facts(path, q) for path in paths]
    return out


def _safe_facts(path: str, q: FileQuery) -> FileFacts:
    """A detector's file that cannot be read as expected (h5py raises more than OSError:
    NotImplementedError for some selections) is reported missing, never raised: one
    stream's files never fail the scan."""
    try:
        return _facts(path, q)
    except Exception as exc:
        _logger.warning("cannot read %s:%s: %s: %s", path, q.dataset, type(exc).__name__, exc)
        return FileFacts(path=path, dataset=q.dataset)


def _facts(path: str, q: FileQuery) -> FileFacts:
    facts = FileFacts(path=path, dataset=q.dataset)
    if q.what == "list":
        facts.exists = os.path.isfile(path)
        return facts
    if q.what == "edf":
        facts.raw = frame_layout(path) if os.path.isfile(path) else None
        facts.exists = facts.raw is not None
        return facts
    if not os.path.isfile(path):
        return facts
    try:
        with h5py.File(path, "r", locking=False) as f:
            if q.dataset and _virtual_facts(f, q.dataset, facts):
                return facts
            obj = f.get(q.dataset) if q.dataset else f
            if obj is None:
                return facts
            facts.exists = True
            if isinstance(obj, h5py.Group):
                facts.members = tuple(obj)
                return facts
            facts.shape, facts.dtype = tuple(obj.shape), obj.dtype.str
            if obj.is_virtual:
                folder = os.path.dirname(os.path.abspath(path))
                shapes: dict = {}
                facts.sources = [_source(vs, folder, path, shapes) for vs in obj.virtual_sources()]
    except (OSError, KeyError, ValueError) as exc:  # being written, damaged: not there (yet)
        _logger.debug("cannot read %s:%s: %s", path, q.dataset, exc)
        facts.exists = False
    return facts


def _virtual_facts(f: h5py.File, name: str, facts: FileFacts) -> bool:
    """A virtual dataset's facts from its mappings as stored (``io.vds_layout``: HDF5's
    own open costs seconds for a Lima2 master); False when they cannot be read so."""
    layout = read_virtual_layout(f, name)
    if layout is None or not layout.mappings:
        return False
    folder = os.path.dirname(os.path.abspath(f.filename))
    points: dict = {}  # dataset name -> (point shape, dtype), from the first source file that reads
    for m in layout.mappings:
        if points.get(m.dataset_name, (None,))[0] is None:
            points[m.dataset_name] = _source_point(m.file_name, m.dataset_name, folder, f.filename)
    sources = []
    for m in layout.mappings:
        vidx = np.arange(layout.shape[0]) if m.virtual.first is None else m.virtual.first
        point = points[m.dataset_name][0] or ()
        if m.source.first is None:  # all of the source: as many points as the mapping
            sidx = np.arange(len(vidx))
        else:
            sidx = m.source.first
        sources.append((vidx, m.file_name, m.dataset_name, sidx, (int(sidx.max()) + 1 if len(sidx) else 0, *point)))
    dtypes = {dtype for _, dtype in points.values() if dtype is not None}
    if len(dtypes) != 1:  # no source readable (or they disagree): HDF5 says the type
        return False
    facts.exists, facts.shape, facts.dtype, facts.sources = True, layout.shape, dtypes.pop(), sources
    return True


def _source_point(file_name: str, dataset: str, folder: str, own: str) -> tuple:
    """(shape of one point, dtype) of a source dataset, (None, None) if unreadable."""
    src = own if file_name == "." else file_name if os.path.isabs(file_name) else os.path.join(folder, file_name)
    try:
        with h5py.File(src, "r", locking=False) as g:
            d = g[dataset]
            return tuple(d.shape[1:]), d.dtype.str
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return None, None


def _source(vs, folder: str, own: str, shapes: dict) -> tuple:
    """(frame indices, file, dataset, indices in the source, source shape) of one mapping.

    A source space without an extent (made without a shape) stands for the whole
    source dataset: its shape is read from the source file, once per dataset name
    (a master maps the same dataset of each receiver file: the first file gives its
    point shape, the mapping its length; 100 files opened cost 0.13 s)."""
    vidx = _first_dim(vs.vspace)
    shape = tuple(vs.src_space.shape or ())
    if not shape:
        point = shapes.get(vs.dset_name)
        if point is None:
            point = _source_point(vs.file_name, vs.dset_name, folder, own)[0]
            if point is not None:
                shapes[vs.dset_name] = point
        shape = (len(vidx), *point) if point is not None else (len(vidx),)
        sidx = list(range(len(vidx)))
    else:
        sidx = _first_dim(vs.src_space)
    return np.asarray(vidx), vs.file_name, vs.dset_name, np.asarray(sidx), shape


def _first_dim(space) -> list[int]:
    """Indices along the first dimension that a dataspace's selection covers, in order.

    Lima2's master maps each receiver file to an arbitrary list of frame indices
    (h5py makes it a union of hyperslabs), so the blocks are read one by one.
    """
    kind = space.get_select_type()
    if kind == h5py.h5s.SEL_ALL:
        return list(range(space.shape[0]))
    if kind == h5py.h5s.SEL_HYPERSLABS:
        blocks = np.asarray(space.get_select_hyper_blocklist())
        starts, ends = blocks[:, 0, 0], blocks[:, 1, 0]
        if (starts == ends).all():  # one frame per block (a master's frame list): no Python loop
            return list(dict.fromkeys(starts.tolist()))
        out: list[int] = []
        for start, end in zip(starts.tolist(), ends.tolist()):
            out.extend(range(start, end + 1))
        return list(dict.fromkeys(out))
    if kind == h5py.h5s.SEL_POINTS:
        return list(dict.fromkeys(int(p[0]) for p in space.get_select_elem_pointlist()))
    return []


__all__ = ["answer"]
