"""Datasets that grow while a scan runs.

Chunks of roughly ``CHUNK_BYTES`` keep appends cheap and reads efficient, but never
longer than the scan is expected to be: HDF5 allocates an uncompressed chunk whole, so a
5-point scan with 64k-point chunks would cost half a megabyte per counter.
Points of one channel that vary in length (ragged spectra) are padded with the
fill value, which the dataset declares, so nothing is dropped.

Filters: the presets are defined in ``nexus_writer_service.compression``; the default,
``gzip`` (byte shuffle + deflate), is built into every HDF5. HDF5 would deflate each chunk
in the writing thread, holding h5py's lock (and Python's): far slower than the data
arrive from Redis. So a ``gzip``/``deflate`` dataset of fixed point shape keeps its
current chunk in memory, whole chunks are shuffled (numpy) and deflated (zlib releases
the GIL) in worker threads (``_Deflater``), and written as they are with HDF5's direct
chunk write: the dataset's own filter pipeline (shuffle + deflate) decodes them, in any
reader. The last, partial chunk is written at each flush (``GrowingDataset.sync``).
BLISS's ``writer_options["chunk_options"]`` (chunk size, compression threshold, chunk
split, scheme; meaning as in ESRF's blisswriter 2.0 ``io/h5_config.py``) become
``StorageOptions``.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h5py
import hdf5plugin
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from .. import compression as presets
from .files import bound_metadata_cache
from .objects import PLAIN_KINDS, link_name

CHUNK_BYTES = 1 << 20
#: chunk length of uncompressed data when the scan's length is not known (timescan ...)
UNKNOWN_LENGTH_ROWS = 4096

def check_compression(name: str | None) -> str:
    """Our name for a filter ("" none); ValueError naming the choices (``compression.canonical``)."""
    return presets.canonical(name)


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
    #: the filter (our preset name, "" none: see ``nexus_writer_service.compression``)
    compression: str | None = None

    @classmethod
    def from_writer_options(cls, writer_options) -> "tuple[StorageOptions, list[str]]":
        """(options, problems) from ``scan_info["writer_options"]``; a bad value is a problem, not fatal."""
        chunk = (writer_options or {}).get("chunk_options") if isinstance(writer_options, dict) else None
        if not isinstance(chunk, dict):
            return cls(), []
        values: dict[str, Any] = {}
        problems: list[str] = []
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
            ours = presets.BLISS_SCHEMES.get(str(scheme).lower())
            if ours is None:
                problems.append(f"writer_options.chunk_options.compression_scheme: {scheme!r} ignored "
                                f"(BLISS names: {', '.join(presets.BLISS_SCHEMES)})")
            else:
                values["compression"] = presets.canonical(ours)
        return cls(**values), problems


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    #: shape of one point; -1 marks a ragged dimension
    point_shape: tuple
    fillvalue: float | int | bool = 0
    #: compression preset for points with at least one dimension (None, "": no filter)
    compression: str | None = presets.DEFAULT
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
            point = math.prod(d if d > 0 else 256 for d in self.point_shape)
            if self.expected_points * point * np.dtype(self.dtype).itemsize <= limit:
                return ""
        return name


def _compression_kwargs(name: str | None) -> dict:
    name = check_compression(name)
    if not name:
        return {}
    filters = presets.PRESETS[name].filters
    if "bitshuffle" in filters:
        return dict(hdf5plugin.Bitshuffle(cname="lz4" if "lz4" in filters else "none"))
    out: dict = {"shuffle": "shuffle" in filters}
    if "deflate" in filters:
        out.update(compression="gzip", compression_opts=presets.DEFLATE_LEVEL)
    return out


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
    default cache per dataset adds up over a hundred counters);
    filtered data keep one chunk cached, or each append would recompress the chunk.
    h5py's ``rdcc_nbytes=0`` keyword is ignored (0 is falsy), hence the property list
    (shared: HDF5 copies it into each dataset it opens, nothing changes it).
    """
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(521, 2 * chunk_bytes if filtered else 0, 1.0)
    return dapl


#: creation property lists of plain chunked datasets, by (chunks, fill value): HDF5 copies a list
#: when it creates a dataset (converting the fill value to the dataset's type), and making one is
#: a third of a dataset's creation
_PLAIN_DCPLS: dict[tuple, h5p.PropDCID] = {}


def _plain_dcpl(chunks: tuple, fillvalue) -> h5p.PropDCID:
    key = (chunks, repr(fillvalue), type(fillvalue))  # (repr: NaN is not equal to itself)
    dcpl = _PLAIN_DCPLS.get(key)
    if dcpl is None:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk(chunks)
        dcpl.set_fill_value(np.array(fillvalue))  # HDF5 converts (and clamps), as with h5py
        dcpl.set_obj_track_times(False)
        if len(_PLAIN_DCPLS) >= 256:  # (a session's shapes are few; never unbounded)
            _PLAIN_DCPLS.clear()
        _PLAIN_DCPLS[key] = dcpl
    return dcpl


def _plain_chunked(parent, name, dtype, shape, maxshape, chunks, fillvalue, dapl) -> h5py.Dataset:
    """What ``create_dataset`` makes without filters, through the low-level API (faster:
    short scans create many of these, see objects.py)."""
    dcpl = _plain_dcpl(tuple(chunks), fillvalue)
    space = h5s.create_simple(shape, tuple(h5s.UNLIMITED if m is None else m for m in maxshape))
    encoded, lcpl = link_name(name)
    dsid = h5d.create(parent.id, encoded, h5t.py_create(dtype, logical=True), space,
                      dcpl=dcpl, dapl=dapl, lcpl=lcpl)
    return h5py.Dataset(dsid)


class _OpenSlots:
    """How many growing datasets of this process may stay open between appends.

    HDF5 keeps state per open chunked dataset whatever its chunk cache (many times what
    a closed one costs in the metadata cache): a scan of thousands of counters would
    hold hundreds of MB open. A dataset that finds no free slot is closed after each
    append and reopened by path at the next one (cheap). The first ``limit`` take the slots, the others
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
#: their file's metadata cache (``files.bound_metadata_cache``): a look is cheap, not free
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


#: worker threads that deflate chunks (zlib releases the GIL); more would only queue on 2 cores
DEFLATE_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: chunks of one dataset being deflated at once; the writer waits beyond (bounds memory)
DEFLATE_IN_FLIGHT = 2 * DEFLATE_WORKERS + 1
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _deflate_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DEFLATE_WORKERS, thread_name_prefix="nxw-deflate")
        return _pool


def encode_chunk(chunk: np.ndarray, shuffle: bool, level: int) -> bytes:
    """A chunk as HDF5's shuffle + deflate filters store it: bytes regrouped by their
    position in the element (H5Z_filter_shuffle), then zlib (H5Z_filter_deflate)."""
    raw = np.ascontiguousarray(chunk)
    if shuffle and raw.dtype.itemsize > 1:
        raw = np.ascontiguousarray(raw.reshape(-1).view(np.uint8).reshape(-1, raw.dtype.itemsize).T)
    return zlib.compress(raw.reshape(-1).view(np.uint8).data, level)


def _deflate_pipeline(dcpl, point_shape: tuple, chunks: tuple | None, dtype) -> tuple[bool, int] | None:
    """(shuffle, level) if this dataset's chunks can be deflated by ``_Deflater``: filters
    deflate or shuffle + deflate only, whole points per chunk, a fixed point shape."""
    if chunks is None or -1 in point_shape or tuple(chunks[1:]) != tuple(point_shape):
        return None
    if np.dtype(dtype).kind not in PLAIN_KINDS:
        return None
    filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
    codes = [f[0] for f in filters]
    if codes == [h5py.h5z.FILTER_DEFLATE]:
        return False, int(filters[0][2][0]) if len(filters[0][2]) else 4
    if codes == [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE]:
        return True, int(filters[1][2][0]) if len(filters[1][2]) else 4
    return None


class _Deflater:
    """The chunks of one deflate dataset: the current one in memory, full ones deflated in
    worker threads and written (H5Dwrite_chunk, in the caller's thread) as they are done.

    Chunks are ``rows`` points of the dataset's point shape; rows past the data hold the
    fill value, as HDF5 would write them. The dataset's extent in the file only covers
    points whose data are written: HDF5 may flush its metadata at any time (another
    scan's flush of the shared file, the metadata cache bound), and a writer killed then
    must leave a file whose length is what it holds (a resumed entry continues from it).
    """

    def __init__(self, rows: int, point_shape: tuple, dtype, fillvalue, shuffle: bool, level: int,
                 length: int):
        self.rows = rows
        self.point_shape = tuple(point_shape)
        self.dtype = np.dtype(dtype)
        self.fillvalue = fillvalue
        self.shuffle = shuffle
        self.level = level
        #: points in the file (the dataset's extent): written, or grown over (fill values)
        self.extent = length
        #: points in the file when the dataset was opened (a resumed entry's)
        self._opened_with = length
        #: points appended (in the file, deflating, or in the current chunk)
        self.length = length
        #: the chunk being filled: (index, array), None between chunks
        self._buf: tuple[int, np.ndarray] | None = None
        #: the current chunk changed since it was last written
        self._dirty = False
        self._pending: collections.deque[tuple[int, Future]] = collections.deque()

    def _new_buffer(self, dsid, index: int) -> np.ndarray:
        buf = np.full((self.rows,) + self.point_shape, self.fillvalue, dtype=self.dtype)
        start = index * self.rows
        if self._opened_with > start:  # points already in the file (a resumed entry): read back
            n = min(self._opened_with, start + self.rows) - start
            space = dsid.get_space()
            space.select_hyperslab((start,) + (0,) * len(self.point_shape), (n,) + self.point_shape)
            part = np.empty((n,) + self.point_shape, dtype=self.dtype)
            dsid.read(h5s.create_simple(part.shape), space, part)
            buf[:n] = part
        return buf

    def put(self, dsid, batch: np.ndarray) -> None:
        """Append the points ``batch``."""
        start, pos, n, rows = self.length, 0, len(batch), self.rows
        while pos < n:
            index, row = divmod(start + pos, rows)
            take = min(rows - row, n - pos)
            if self._buf is not None and self._buf[0] != index:
                self._submit(*self._buf)
                self._buf = None
            if self._buf is None and row == 0 and take == rows:
                self._submit(index, batch[pos:pos + rows])  # a whole chunk: no copy
            else:
                if self._buf is None:
                    self._buf = (index, self._new_buffer(dsid, index))
                self._buf[1][row:row + take] = batch[pos:pos + take]
                self._dirty = True
                if row + take == rows:
                    self._submit(*self._buf)
                    self._buf = None
            pos += take
        self.length = start + n
        self.collect(dsid)

    def grow(self, dsid, n: int) -> None:
        """``n`` points that never arrived: everything before them goes into the file, then
        the extent covers them (fill values)."""
        self.sync(dsid)
        if self._buf is not None and self.length + n >= (self._buf[0] + 1) * self.rows:
            self._buf = None  # written whole by sync: the next points are in another chunk
        self.length += n
        self._set_extent(dsid, self.length)

    def _submit(self, index: int, chunk: np.ndarray) -> None:
        self._pending.append((index, _deflate_pool().submit(encode_chunk, chunk, self.shuffle, self.level)))
        self._dirty = False

    def collect(self, dsid, wait: bool = False) -> None:
        """Write the chunks deflated so far, in order (all of them with ``wait``; the oldest
        ones while too many are in flight)."""
        while self._pending and (wait or self._pending[0][1].done() or len(self._pending) > DEFLATE_IN_FLIGHT):
            index, future = self._pending.popleft()
            # chunks are written in order: every point before this chunk's end is in the file
            self._write(dsid, index, future.result(), min(self.length, (index + 1) * self.rows))

    def sync(self, dsid) -> None:
        """Everything appended is in the file: pending chunks, and the current partial one."""
        self.collect(dsid, wait=True)
        if self._buf is not None and self._dirty:
            index, buf = self._buf
            self._write(dsid, index, encode_chunk(buf, self.shuffle, self.level), self.length)
            self._dirty = False
        self._set_extent(dsid, self.length)

    def _write(self, dsid, index: int, data: bytes, covered: int) -> None:
        self._set_extent(dsid, covered)  # HDF5 writes chunks inside the extent only
        dsid.write_direct_chunk((index * self.rows,) + (0,) * len(self.point_shape), data)

    def _set_extent(self, dsid, n: int) -> None:
        if n > self.extent:
            dsid.set_extent((n,) + self.point_shape)
            self.extent = n

    def abandon(self) -> None:
        """Nothing more is written (the file failed): drop what is pending."""
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._buf = None


#: attribute of a growing dataset: how many of its points are fill values standing for
#: points that never arrived (trimmed from Redis before they were read)
MISSING = "missing_points"


class GrowingDataset:
    """A channel's dataset, appended to; open between appends only while a slot is free.

    Filtered datasets always stay open: their last, partial chunk is in the chunk
    cache (or in memory, ``_Deflater``), and closing would compress and write it at every
    append, then read and decompress it again. Deflated datasets are complete in the file
    after ``sync`` (the writer calls it before each flush) and ``close``.
    """

    def __init__(self, dset: h5py.Dataset, spec: ArraySpec, cache_bytes: int | None = None,
                 anchor: tuple | None = None, plain: tuple | None = None):
        """``anchor``: (open group, path below it) to reopen the dataset from. New entries
        are built under a staging name and moved into place (``io.entries.create``): an
        open group follows the move, a path from the file's root would not (and HDF5 finds
        the name of an object reopened by reference by searching the whole file).
        ``plain``: (dtype, shape) of an unfiltered dataset ``create`` just made, not asked
        of HDF5 again (hundreds of short scans make thousands of datasets)."""
        self.spec = spec
        if plain is not None:
            self.dtype, self._shape = plain
            self._filtered = False
        else:
            self.dtype = dset.dtype
            self._shape = tuple(dset.shape)
            dcpl = dset.id.get_create_plist()
            self._filtered = dcpl.get_nfilters() > 0
        self.length = self._shape[0]
        resumed = cache_bytes is None  # a dataset reopened from the file (resumed entry)
        #: chunks deflated in worker threads (gzip/deflate of fixed-shape points), else None
        self._deflater: _Deflater | None = None
        pipeline = _deflate_pipeline(dcpl, tuple(spec.point_shape), dset.chunks, self.dtype) if self._filtered else None
        if pipeline is not None:
            fill = np.zeros((1,), dtype=self.dtype)
            dcpl.get_fill_value(fill)
            self._deflater = _Deflater(dset.chunks[0], tuple(dset.chunks[1:]), self.dtype, fill[0], *pipeline,
                                       length=self.length)
        if cache_bytes is None:
            cache_bytes = math.prod(dset.chunks or (1,)) * self.dtype.itemsize
        self._cache_bytes: int = cache_bytes
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
        """Whether it holds an open HDF5 dataset: only the tests ask (the open-slot bound)."""
        return self._id is not None

    @property
    def dset(self) -> h5py.Dataset:
        """The h5py dataset, opened again if it was closed (``park`` closes it again)."""
        return h5py.Dataset(self._open())

    def _open(self):
        if self._id is None:
            cached = self._filtered and self._deflater is None
            self._id = h5d.open(self._anchor, self._path, _chunk_cache(self._cache_bytes, cached))
            if not self._slot:
                self._slot = OPEN_SLOTS.take()
        return self._id

    def park(self) -> None:
        """Close the dataset unless it holds an open slot (or is filtered); it reopens when needed."""
        if self._id is not None and not self._slot and not self._filtered:
            self._id.close()
            self._id = None

    def sync(self) -> None:
        """Every point appended is in the file (for the next flush): chunks still being
        deflated, and the current partial chunk. Nothing to do for other datasets."""
        if self._deflater is not None:
            self._deflater.sync(self._open())

    def abandon(self) -> None:
        """The file can no longer be written: what is held in memory is dropped (it is in
        Redis still), the dataset itself is left as it is (never closed again)."""
        if self._deflater is not None:
            self._deflater.abandon()

    def close(self, sync: bool = True) -> None:
        """Close the dataset and give its slot back (the scan is done with it). ``sync``:
        write what is still in memory first (False: the file failed, drop it)."""
        if self._deflater is not None:
            try:
                if sync:
                    self.sync()
            finally:
                self._deflater.abandon()
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
        point_bytes = dtype.itemsize * math.prod(inner)
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
        cache_bytes = math.prod(chunks) * dtype.itemsize
        # deflated chunks are written whole (_Deflater): HDF5 caches none of them
        deflated = (kwargs.get("compression") == "gzip" and -1 not in spec.point_shape
                    and tuple(chunks[1:]) == point and dtype.kind in PLAIN_KINDS)
        dapl = _chunk_cache(cache_bytes, bool(kwargs) and not deflated)
        plain = None
        if kwargs or dtype.kind not in PLAIN_KINDS:  # h5py checks the filter is available
            dset = parent.create_dataset(
                name, shape=(0,) + point, maxshape=maxshape, dtype=dtype, chunks=chunks,
                fillvalue=spec.fillvalue, dapl=dapl, **kwargs)
        else:
            dset = _plain_chunked(parent, name, dtype, (0,) + point, maxshape, chunks, spec.fillvalue, dapl)
            plain = (dtype, (0,) + point)
        if -1 in spec.point_shape:
            dset.attrs["fill_value"] = spec.fillvalue
        _bound_cache(dset.id)
        return cls(dset, spec, cache_bytes, anchor, plain)

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
        grown = list(self._shape)
        grown[0] = start + n
        for i, d in enumerate(batch.shape[1:], 1):
            if grown[i] < d:  # only ragged dimensions can grow
                grown[i] = d
        shape = tuple(grown)
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        dsid = self._open()
        try:
            if self._deflater is not None:  # it sets the extent as the data reach the file
                self._deflater.put(dsid, batch)
            elif batch.dtype.kind in PLAIN_KINDS:
                # h5py's resize() and slicing are slow in Python: with hundreds of channels
                # per scan they are the writer's time, so the selection is made here
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
            if self._deflater is not None:
                self._deflater.grow(dsid, n)
            else:
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
