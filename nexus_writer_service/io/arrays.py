"""Datasets that grow while a scan runs.

Chunks of roughly ``CHUNK_BYTES`` keep appends cheap and reads efficient, but never
longer than the scan is expected to be: HDF5 allocates an uncompressed chunk whole, so a
5-point scan with 64k-point chunks would cost half a megabyte per counter.
Points of one channel that vary in length (ragged spectra) are padded with the
fill value, which the dataset declares, so nothing is dropped.

Filters: bitshuffle-LZ4 (HDF5 filter 32008) is the fast default, but only readers with
the plugin open it (h5py needs ``import hdf5plugin``; h5dump, HDFView and MATLAB need
``HDF5_PLUGIN_PATH``). ``gzip`` (deflate + shuffle) is built into every HDF5: the preset
for files that must open everywhere. ``required_plugins`` says which plugin a filter
needs, so the file can state it. BLISS's ``writer_options["chunk_options"]`` (chunk
size, compression threshold, chunk split, scheme; meaning as in ESRF's blisswriter
2.0 ``io/h5_config.py``) become ``StorageOptions``.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from .files import bound_metadata_cache
from .objects import PLAIN_KINDS, link_name

CHUNK_BYTES = 1 << 20
#: chunk length of uncompressed data when the scan's length is not known (timescan ...)
UNKNOWN_LENGTH_ROWS = 4096

#: filters this writer applies -> the HDF5 filter plugin a reader needs for it (None: built in)
FILTER_PLUGINS: dict[str, str | None] = {
    "": None, "gzip": None, "deflate": None, "shuffle": None,
    "bitshuffle-lz4": "bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)",
    "bitshuffle": "bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)",
}
#: BLISS's compression_scheme names (SCAN_SAVING.writer_object) -> ours
BLISS_SCHEMES = {"none": "", "gzip": "deflate", "byteshuffle": "shuffle", "gzip-byteshuffle": "gzip",
                 "bitshuffle": "bitshuffle", "lz4-bitshuffle": "bitshuffle-lz4"}


def check_compression(name: str | None) -> str:
    """Our name for a filter (``none``/None -> ""); ValueError naming the choices."""
    name = (name or "").lower()
    name = "" if name == "none" else {"lz4-bitshuffle": "bitshuffle-lz4"}.get(name, name)
    if name not in FILTER_PLUGINS:
        raise ValueError(f"unknown compression {name!r} (use 'bitshuffle-lz4' (fast, needs the plugin), "
                         f"'gzip' (every HDF5 reader opens it) or 'none')")
    return name


def required_plugins(compressions) -> list[str]:
    """The filter plugins a reader needs for data written with these filters (sorted, unique)."""
    return sorted({FILTER_PLUGINS[check_compression(c)] for c in compressions} - {None})


@dataclass(frozen=True)
class StorageOptions:
    """How growing datasets are chunked and filtered (BLISS ``writer_options``).

    ``None`` everywhere: this writer's own choices. Sizes are bytes, as BLISS publishes them.
    """

    #: largest uncompressed chunk
    chunk_nbytes: int | None = None
    #: filter only data whose expected size exceeds this (None: filter every point with dimensions)
    compression_limit_nbytes: int | None = None
    #: split every dimension into this many parts (until a chunk fits ``chunk_nbytes``)
    chunk_split: int | None = None
    #: the filter (our name, see FILTER_PLUGINS)
    compression: str | None = None

    @classmethod
    def from_writer_options(cls, writer_options) -> "tuple[StorageOptions, list[str]]":
        """(options, problems) from ``scan_info["writer_options"]``; a bad value is a problem, not fatal."""
        chunk = (writer_options or {}).get("chunk_options") if isinstance(writer_options, dict) else None
        if not isinstance(chunk, dict):
            return cls(), []
        values, problems = {}, []
        for key in ("chunk_nbytes", "compression_limit_nbytes", "chunk_split"):
            value = chunk.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < (1 if key != "compression_limit_nbytes" else 0):
                problems.append(f"writer_options.chunk_options.{key}: {value!r} ignored (expected a positive number)")
            else:
                values[key] = int(value)
        scheme = chunk.get("compression_scheme")
        if scheme is not None:
            ours = BLISS_SCHEMES.get(str(scheme).lower())
            if ours is None:
                problems.append(f"writer_options.chunk_options.compression_scheme: {scheme!r} ignored "
                                f"(BLISS names: {', '.join(BLISS_SCHEMES)})")
            else:
                values["compression"] = ours
        return cls(**values), problems


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    #: shape of one point; -1 marks a ragged dimension
    point_shape: tuple
    fillvalue: float | int | bool = 0
    #: compression for points with at least one dimension (None: no filter)
    compression: str | None = "bitshuffle-lz4"
    #: points the scan announces (scan_info npoints); 0: unknown
    expected_points: int = 0
    #: BLISS's chunk options for this scan (its compression is one of the choices the caller
    #: weighs to give ``compression``: see mapping.beamline.channel_compression)
    storage: StorageOptions = StorageOptions()

    @property
    def filter(self) -> str:
        """The filter this dataset gets ("" none), from the compression asked and the limits."""
        if not [d for d in self.point_shape]:
            return ""  # scalars: plain appends are cheapest, and nothing to gain
        name = check_compression(self.compression)
        limit = self.storage.compression_limit_nbytes
        if name and limit is not None and self.expected_points > 0:
            point = int(np.prod([d if d > 0 else 256 for d in self.point_shape]))
            if self.expected_points * point * np.dtype(self.dtype).itemsize <= limit:
                return ""
        return name


def _compression_kwargs(name: str | None) -> dict:
    name = check_compression(name)
    if not name:
        return {}
    if name == "gzip":
        return {"compression": "gzip", "shuffle": True}
    if name == "deflate":
        return {"compression": "gzip"}
    if name == "shuffle":
        return {"shuffle": True}
    import hdf5plugin  # registers the filter with HDF5

    return dict(hdf5plugin.Bitshuffle(cname="lz4" if name == "bitshuffle-lz4" else "none"))


def _split_chunks(shape: tuple, itemsize: int, nbytes: int, split: int) -> tuple:
    """blisswriter's rule: from the innermost dimension out, each is cut into ``split`` parts
    until a chunk holds ``nbytes``; outer dimensions then get 1."""
    max_size = max(1, nbytes // itemsize)
    current, out = 1, []
    for n in reversed(shape):
        c = 1 if current >= max_size else min(-(-n // split), -(-max_size // current))
        out.append(max(1, c))
        current *= out[-1]
    return tuple(reversed(out))


@functools.lru_cache(maxsize=64)
def _chunk_cache(chunk_bytes: int, filtered: bool):
    """Dataset access: no chunk cache for plain data (appends write whole rows, and HDF5's
    default 1 MB cache per dataset adds up to hundreds of MB over a hundred counters);
    filtered data keep one chunk cached, or each append would recompress the chunk.
    h5py's ``rdcc_nbytes=0`` keyword is ignored (0 is falsy), hence the property list
    (shared: HDF5 copies it into each dataset it opens, nothing changes it).
    """
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(521, 2 * chunk_bytes if filtered else 0, 1.0)
    return dapl


def _plain_chunked(parent, name, dtype, shape, maxshape, chunks, fillvalue, dapl) -> h5py.Dataset:
    """What ``create_dataset`` makes without filters, through the low-level API (3x faster:
    short scans create many of these, see objects.py)."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_fill_value(np.array(fillvalue))  # HDF5 converts (and clamps), as with h5py
    dcpl.set_obj_track_times(False)
    space = h5s.create_simple(shape, tuple(h5s.UNLIMITED if m is None else m for m in maxshape))
    encoded, lcpl = link_name(name)
    dsid = h5d.create(parent.id, encoded, h5t.py_create(dtype, logical=True), space,
                      dcpl=dcpl, dapl=dapl, lcpl=lcpl)
    return h5py.Dataset(dsid)


class _OpenSlots:
    """How many growing datasets of this process may stay open between appends.

    HDF5 keeps ~20 kB of state per open chunked dataset whatever its chunk cache
    (4000 open 0D datasets: +77 MB, where 4000 closed ones cost their ~6 MB of
    metadata cache): a scan of thousands of counters would hold hundreds of MB open.
    A dataset that finds no free slot is closed after each append and reopened by
    path at the next one (~15 us). The first ``limit`` take the slots, the others
    rotate: with a cyclic access pattern that keeps ``limit`` of them open, where
    an LRU would reopen every one.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)


#: appends and creations of growing datasets (all files) between two looks at the size of
#: their file's metadata cache (``files.bound_metadata_cache``; ~1 us a look)
CACHE_CHECK_EVERY = 128
_calls = 0


def _bound_cache(dsid) -> None:
    global _calls
    _calls += 1
    if _calls >= CACHE_CHECK_EVERY:
        _calls = 0
        bound_metadata_cache(h5py.h5i.get_file_id(dsid))


#: growing datasets kept open between appends in this process (scans of up to a few
#: hundred channels never reopen one); see _OpenSlots
OPEN_SLOTS = _OpenSlots(256)


#: attribute of a growing dataset: how many of its points are fill values standing for
#: points that never arrived (trimmed from Redis before they were read)
MISSING = "missing_points"


class GrowingDataset:
    """A channel's dataset, appended to; open between appends only while a slot is free.

    Filtered datasets always stay open: their last, partial chunk is in the chunk
    cache, and closing would compress and write it at every append, then read and
    decompress it again.
    """

    def __init__(self, dset: h5py.Dataset, spec: ArraySpec, cache_bytes: int | None = None,
                 anchor: tuple | None = None):
        """``anchor``: (open group, path below it) to reopen the dataset from. New entries
        are built under a staging name and moved into place (``io.entries.create``): an
        open group follows the move, a path from the file's root would not (and HDF5 finds
        the name of an object reopened by reference by searching the whole file)."""
        self.spec = spec
        self.dtype = dset.dtype
        self._shape = tuple(dset.shape)
        self.length = self._shape[0]
        dcpl = dset.id.get_create_plist()
        self._filtered = dcpl.get_nfilters() > 0
        resumed = cache_bytes is None  # a dataset reopened from the file (resumed entry)
        if resumed:
            cache_bytes = int(np.prod(dset.chunks or (1,))) * self.dtype.itemsize
        self._cache_bytes = cache_bytes
        if anchor is None:
            anchor = (h5py.h5i.get_file_id(dset.id), h5py.h5i.get_name(dset.id))
        self._anchor, self._path = anchor[0], (anchor[1].encode() if isinstance(anchor[1], str) else anchor[1])
        self._id = dset.id
        self._slot = OPEN_SLOTS.take()
        #: points the dataset grew over without data (``grow``); read back when resumed
        self.missing = int(dset.attrs.get(MISSING, 0)) if resumed else 0

    def __del__(self):
        if getattr(self, "_slot", False):
            OPEN_SLOTS.give()
            self._slot = False

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one uncompressed chunk: what a write may allocate at once on disk."""
        return self._cache_bytes

    @property
    def is_open(self) -> bool:
        return self._id is not None

    @property
    def dset(self) -> h5py.Dataset:
        """The h5py dataset, opened again if it was closed (``park`` closes it again)."""
        return h5py.Dataset(self._open())

    def _open(self):
        if self._id is None:
            self._id = h5d.open(self._anchor, self._path, _chunk_cache(self._cache_bytes, self._filtered))
            if not self._slot:
                self._slot = OPEN_SLOTS.take()
        return self._id

    def park(self) -> None:
        """Close the dataset unless it holds an open slot (or is filtered); it reopens when needed."""
        if self._id is not None and not self._slot and not self._filtered:
            self._id.close()
            self._id = None

    def close(self) -> None:
        """Close the dataset and give its slot back (the scan is done with it)."""
        if self._id is not None and self._id.valid:
            self._id.close()
        self._id = None
        if self._slot:
            OPEN_SLOTS.give()
            self._slot = False

    @classmethod
    def create(cls, parent: h5py.Group, name: str, spec: ArraySpec, anchor: tuple | None = None) -> "GrowingDataset":
        """The dataset, open: the caller sets its attributes, then ``park``s it."""
        dtype = np.dtype(spec.dtype)
        point = tuple(0 if d == -1 else int(d) for d in spec.point_shape)
        maxshape = (None,) + tuple(None if d == -1 else int(d) for d in spec.point_shape)
        inner = tuple(d if d > 0 else 256 for d in point)
        point_bytes = dtype.itemsize * int(np.prod(inner or [1]))
        kwargs = _compression_kwargs(spec.filter)
        chunk_bytes = spec.storage.chunk_nbytes or CHUNK_BYTES
        if spec.storage.chunk_split and inner:
            rows = spec.expected_points if spec.expected_points > 0 else UNKNOWN_LENGTH_ROWS
            chunks = _split_chunks((rows,) + inner, dtype.itemsize, chunk_bytes, spec.storage.chunk_split)
        else:
            nchunk = max(1, min(chunk_bytes // max(point_bytes, 1), 1 << 16))
            if spec.expected_points > 0:
                nchunk = min(nchunk, spec.expected_points)
            elif not kwargs:
                nchunk = min(nchunk, UNKNOWN_LENGTH_ROWS)
            chunks = (nchunk,) + inner
        cache_bytes = int(np.prod(chunks)) * dtype.itemsize
        dapl = _chunk_cache(cache_bytes, bool(kwargs))
        if kwargs or dtype.kind not in PLAIN_KINDS:  # h5py checks the filter is available
            dset = parent.create_dataset(
                name, shape=(0,) + point, maxshape=maxshape, dtype=dtype, chunks=chunks,
                fillvalue=spec.fillvalue, dapl=dapl, **kwargs)
        else:
            dset = _plain_chunked(parent, name, dtype, (0,) + point, maxshape, chunks, spec.fillvalue, dapl)
        if -1 in spec.point_shape:
            dset.attrs["fill_value"] = spec.fillvalue
        _bound_cache(dset.id)
        return cls(dset, spec, cache_bytes, anchor)

    def append(self, batch) -> int:
        """Append points; ragged batches come as a list of arrays."""
        if isinstance(batch, list):
            if not batch:
                return 0
            batch = self._pad(batch)
        batch = np.asarray(batch)
        if batch.ndim == len(self.spec.point_shape):
            batch = batch[np.newaxis, ...]
        n = batch.shape[0]
        if n == 0:
            return 0
        start = self.length
        shape = list(self._shape)
        shape[0] = start + n
        for i, d in enumerate(batch.shape[1:], 1):
            if shape[i] < d:  # only ragged dimensions can grow
                shape[i] = d
        shape = tuple(shape)
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        dsid = self._open()
        try:
            if batch.dtype.kind in PLAIN_KINDS:
                # h5py's resize() and slicing cost ~100 us per call in Python: with hundreds
                # of channels per scan that is the writer's time, so the selection is made here
                dsid.set_extent(shape)
                space = dsid.get_space()
                space.select_hyperslab((start,) + (0,) * (batch.ndim - 1), batch.shape)
                dsid.write(h5s.create_simple(batch.shape), space, batch)
            else:
                dset = h5py.Dataset(dsid)
                dset.resize(shape)
                index = (slice(start, start + n),) + tuple(slice(0, d) for d in batch.shape[1:])
                dset[index] = batch
            _bound_cache(dsid)
        finally:
            self.park()
        self._shape = shape
        self.length = start + n
        return n

    def grow(self, n: int) -> None:
        """``n`` points that never arrived: the dataset grows over them and HDF5's fill
        value (the dataset's, ``fillvalues``) stands for them; nothing is built or written,
        so a gap of millions of points costs neither memory nor storage."""
        if n <= 0:
            return
        shape = (self.length + n,) + self._shape[1:]
        try:
            dsid = self._open()
            dsid.set_extent(shape)
            # said in the file: a writer resuming the entry must not take them for points
            self.missing += n
            h5py.Dataset(dsid).attrs[MISSING] = np.int64(self.missing)
        finally:
            self.park()
        self._shape = shape
        self.length += n

    def _pad(self, points: list) -> np.ndarray:
        points = [np.asarray(p) for p in points]
        ndim = len(self.spec.point_shape)
        shape = tuple(max(p.shape[i] if p.ndim > i else 0 for p in points) for i in range(ndim))
        out = np.full((len(points),) + shape, self.spec.fillvalue, dtype=np.dtype(self.spec.dtype))
        for i, p in enumerate(points):
            out[(i,) + tuple(slice(0, d) for d in p.shape)] = p
        return out
