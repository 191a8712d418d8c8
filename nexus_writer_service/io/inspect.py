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
from ..vds_mapping import VdsMapping, squeezed
from .edf import frame_layout
from .vds_layout import read_virtual_layout, space_frames

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
            if q.what == "values":
                facts.values = np.asarray(obj[()])
            if obj.is_virtual:
                facts.sources = _hdf5_sources(obj, path)
    except (OSError, KeyError, ValueError) as exc:  # being written, damaged: not there (yet)
        _logger.debug("cannot read %s:%s: %s", path, q.dataset, exc)
        facts.exists = False
    return facts


class _SourcePoints:
    """Shape of one frame of each source dataset, from the first of its files that reads
    (a master maps the same dataset of each receiver file: one file opened per name)."""

    def __init__(self, path: str):
        self.own = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.found: dict = {}  # dataset name -> (point shape, dtype)

    def __call__(self, file_name: str, dataset: str) -> tuple | None:
        return self.facts(file_name, dataset)[0]

    def facts(self, file_name: str, dataset: str) -> tuple:
        known = self.found.get(dataset)
        if known is None or known[0] is None:
            known = _source_point(file_name, dataset, self.folder, self.own)
            if known[0] is not None or dataset not in self.found:
                self.found[dataset] = known
        return known


def _virtual_facts(f: h5py.File, name: str, facts: FileFacts) -> bool:
    """A virtual dataset's facts from its mappings as stored (``io.vds_layout``: HDF5's
    own open costs seconds for a Lima2 master); False when they cannot be read so."""
    points = _SourcePoints(f.filename)
    layout = read_virtual_layout(f, name, points)
    if layout is None or not layout.mappings:
        return False
    dtypes = {dtype for _, dtype in points.found.values() if dtype is not None}
    if len(dtypes) != 1:  # no source readable (or they disagree): HDF5 says the type
        return False
    facts.exists, facts.shape, facts.dtype, facts.sources = True, layout.shape, dtypes.pop(), layout.mappings
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


def _hdf5_sources(dset: h5py.Dataset, path: str) -> list[VdsMapping]:
    """The mappings as HDF5 decodes them, as whole frames; when one takes part of a
    frame (or a source is unreadable), the dataset itself is the one source: its frames
    are what HDF5 reads of it, and a virtual dataset over it stays right."""
    points = _SourcePoints(path)
    shape, frame = tuple(dset.shape), tuple(dset.shape[1:])
    itself = [VdsMapping(np.arange(shape[0]), os.path.abspath(path), dset.name, np.arange(shape[0]), shape, frame)]
    out = []
    for vs in dset.virtual_sources():
        vframes = space_frames(vs.vspace, shape)
        point = points(vs.file_name, vs.dset_name)
        if vframes is None or point is None or squeezed(point) != squeezed(frame):
            return itself
        src_shape = tuple(vs.src_space.shape or ())
        sframes = space_frames(vs.src_space, src_shape if src_shape else (len(vframes), *point))
        if sframes is None or len(sframes) != len(vframes):
            return itself
        extent = src_shape[0] if src_shape else len(vframes)
        out.append(VdsMapping(vframes, vs.file_name, vs.dset_name, sframes, (extent, *point), frame))
    return out



__all__ = ["answer"]
