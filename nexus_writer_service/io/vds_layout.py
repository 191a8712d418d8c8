"""A virtual dataset's mappings read from the file's bytes, without HDF5 decoding them.

Why not h5py: opening a virtual dataset makes HDF5 rebuild every mapping's selection,
and an irregular selection (a union of hyperslabs, which is what a Lima2 conductor
writes: one block per frame a receiver got) is rebuilt block by block at a cost that
grows with the square of the blocks: a master of many large receiver files takes
seconds to open before a single frame is read. Here the same mappings are numpy
arrays.

What is read (HDF5 File Format Specification 4.0): the dataset's object header
(versions 1 and 2, with continuation blocks), its dataspace message (the virtual
extent) and its data layout message (version 4, class 3: where the mappings are), the
global heap object holding them (III.F, "Global Heap Block for Virtual Datasets",
versions 0 and 1, its checksum verified with HDF5's own function) and each mapping's
two serialized selections (all, none, hyperslabs versions 1 to 3).

Only whole frames are answered (``vds_mapping.VdsMapping``): every mapping must take,
on the virtual side and on the source side, whole extents of every dimension but the
first, and a source frame must be a virtual frame. Anything else (part of a frame,
another version, a filter, a shared or truncated message, a wrong checksum, a name
that is not UTF-8) answers None, and the caller asks HDF5 (h5py's
``virtual_sources()``): never a wrong answer, at worst the slow one. The object's
address comes from HDF5 itself (the hard link to it, ``H5Lget_info``).
"""

from __future__ import annotations

import ctypes
import re
import struct
from dataclasses import dataclass
from typing import Callable

import h5py
import numpy as np

from ..vds_mapping import VdsMapping, squeezed

_SEL_NONE, _SEL_HYPERSLABS, _SEL_ALL = 0, 2, 3  # (1: points, not read here)
_MSG_DATASPACE, _MSG_LAYOUT, _MSG_CONTINUATION = 0x0001, 0x0008, 0x0010


class _Unsupported(Exception):
    """Bytes this reader does not know: the caller falls back to HDF5."""


@dataclass
class VirtualLayout:
    shape: tuple[int, ...]
    mappings: list[VdsMapping]


def read_virtual_layout(f: h5py.File, name: str,
                        source_point: Callable[[str, str], tuple | None]) -> VirtualLayout | None:
    """The mappings of dataset ``name`` of open file ``f``, or None when it is not a
    virtual dataset, its bytes are not the kind this module reads, or one of its
    mappings takes anything but whole frames. ``source_point(file as named, dataset)``:
    the shape of one frame of that source dataset (None: unknown, no answer)."""
    try:
        parts = [p for p in name.split("/") if p]
        for i in range(1, len(parts)):  # an external link on the way leads to another file
            if f.id.links.get_info("/".join(parts[:i]).encode()).type == h5py.h5l.TYPE_EXTERNAL:
                return None
        link = f.id.links.get_info(name.encode())  # (H5Oget_info would load the whole header: megabytes)
        if link.type != h5py.h5l.TYPE_HARD:
            return None
        sizeof_addr, sizeof_size = f.id.get_create_plist().get_sizes()
        with open(f.filename, "rb") as raw:
            reader = _Reader(raw, int(f.userblock_size), sizeof_addr, sizeof_size)
            found = reader.layout(int(link.u))
        if found is None:
            return None
        shape, raw_mappings = found
        mappings = _whole_frames(shape, raw_mappings, source_point)
        return None if mappings is None else VirtualLayout(shape, mappings)
    except (_Unsupported, struct.error, OSError, RuntimeError, ValueError, KeyError, IndexError,
            UnicodeDecodeError, MemoryError):
        return None


class _Reader:
    def __init__(self, raw, base: int, sizeof_addr: int, sizeof_size: int):
        self.raw, self.base = raw, base
        self.o, self.l = sizeof_addr, sizeof_size

    def read(self, addr: int, n: int) -> bytes:
        self.raw.seek(self.base + addr)
        data = self.raw.read(n)
        if len(data) != n:
            raise _Unsupported("truncated")
        return data

    def uint(self, data: bytes, pos: int, size: int) -> int:
        return int.from_bytes(data[pos:pos + size], "little")

    # -- object header ----------------------------------------------------
    def layout(self, addr: int) -> tuple[tuple, list[_Raw]] | None:
        messages = dict(self._messages(addr))
        layout, space = messages.get(_MSG_LAYOUT), messages.get(_MSG_DATASPACE)
        if layout is None or space is None:  # not a dataset
            return None
        if layout[0] < 3 or layout[1] != 3:  # version 3+; class 3 = virtual
            return None
        if layout[0] != 4:
            raise _Unsupported(f"layout message version {layout[0]}")
        heap_addr = self.uint(layout, 2, self.o)
        index = self.uint(layout, 2 + self.o, 4)
        shape = self._dataspace(space)
        if not shape:
            raise _Unsupported("scalar virtual dataset")
        return shape, self._mappings(*self._heap_object(heap_addr, index), shape[0])

    def _messages(self, addr: int):
        """(type, body) of every message of the object header at ``addr``."""
        head = self.read(addr, 16)
        if head[:4] == b"OHDR":
            yield from self._messages_v2(addr)
            return
        if head[0] != 1:
            raise _Unsupported(f"object header version {head[0]}")
        nmessages = self.uint(head, 2, 2)
        size = self.uint(head, 8, 4)
        blocks = [(addr + 16, size)]
        seen = 0
        while blocks and seen < nmessages:
            start, size = blocks.pop(0)
            data = self.read(start, size)
            pos = 0
            while pos + 8 <= size and seen < nmessages:
                mtype, msize, flags = self.uint(data, pos, 2), self.uint(data, pos + 2, 2), data[pos + 4]
                body = data[pos + 8:pos + 8 + msize]
                seen += 1
                pos += 8 + msize
                if mtype == _MSG_CONTINUATION:
                    blocks.append((self.uint(body, 0, self.o), self.uint(body, self.o, self.l)))
                elif mtype in (_MSG_LAYOUT, _MSG_DATASPACE):
                    if flags & 0x02:  # shared message: stored elsewhere
                        raise _Unsupported("shared message")
                    yield mtype, body

    def _messages_v2(self, addr: int):
        head = self.read(addr, 32)
        if head[4] != 2:
            raise _Unsupported(f"object header version {head[4]}")
        flags = head[5]
        pos = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        size = self.uint(head, pos, width)
        pos += width
        order = 2 if flags & 0x04 else 0
        blocks = [(addr + pos, size)]
        while blocks:
            start, size = blocks.pop(0)
            data = self.read(start, size)
            p = 0
            while p + 4 + order <= size:
                mtype, msize, mflags = data[p], self.uint(data, p + 1, 2), data[p + 3]
                p += 4 + order
                body = data[p:p + msize]
                p += msize
                if mtype == _MSG_CONTINUATION:
                    caddr, clen = self.uint(body, 0, self.o), self.uint(body, self.o, self.l)
                    if self.read(caddr, 4) != b"OCHK":
                        raise _Unsupported("continuation block signature")
                    blocks.append((caddr + 4, clen - 8))  # signature, checksum
                elif mtype in (_MSG_LAYOUT, _MSG_DATASPACE):
                    if mflags & 0x02:
                        raise _Unsupported("shared message")
                    yield mtype, body

    def _dataspace(self, body: bytes) -> tuple[int, ...]:
        version, rank, flags = body[0], body[1], body[2]
        if version == 1:
            pos = 8
        elif version == 2:
            pos = 4
        else:
            raise _Unsupported(f"dataspace version {version}")
        dims = tuple(self.uint(body, pos + i * self.l, self.l) for i in range(rank))
        if flags & 0x01:  # maximum dimensions: an unlimited VDS takes its extent from its sources
            maxdims = tuple(self.uint(body, pos + (rank + i) * self.l, self.l) for i in range(rank))
            if maxdims != dims:
                raise _Unsupported("resizable virtual dataset")
        return dims

    # -- global heap ------------------------------------------------------
    def _heap_object(self, addr: int, index: int) -> tuple[bytes, int, int]:
        """(the heap collection's bytes, where the object starts and ends in them): the
        mappings are decoded in place (a long scan's master holds megabytes of them)."""
        head = self.read(addr, 8 + self.l)
        if head[:4] != b"GCOL" or head[4] != 1:
            raise _Unsupported("global heap collection")
        size = self.uint(head, 8, self.l)
        data = self.read(addr, size)
        pos = 8 + self.l
        while pos + 8 + self.l <= size:
            idx = self.uint(data, pos, 2)
            osize = self.uint(data, pos + 8, self.l)
            if idx == 0:
                break
            start = pos + 8 + self.l
            if idx == index:
                if start + osize > size:
                    raise _Unsupported("heap object past its collection")
                return data, start, start + osize
            pos = start + (osize + 7) // 8 * 8
        raise _Unsupported("heap object not found")

    # -- the mappings (III.F) ---------------------------------------------
    def _mappings(self, blob: bytes, pos: int, end: int, n: int) -> list[_Raw]:
        """``n``: the virtual dataset's length (no selection may cover more frames)."""
        if not _checksum_ok(blob, pos, end):
            raise _Unsupported("virtual heap block checksum")
        version = blob[pos]
        if version > 1:
            raise _Unsupported(f"virtual heap block version {version}")
        count = self.uint(blob, pos + 1, self.l)
        pos += 1 + self.l
        out: list[_Raw] = []
        for _ in range(count):
            flags = 0
            if version >= 1:
                flags, pos = blob[pos], pos + 1
            file_name, pos = self._name(blob, pos, flags & 0x01, flags & 0x04, out, "file_name")
            dset_name, pos = self._name(blob, pos, flags & 0x02, 0, out, "dataset_name")
            source, pos = self._selection(blob, pos, n)
            virtual, pos = self._selection(blob, pos, n)
            out.append(_Raw(file_name, dset_name, source, virtual))
        if pos + 4 != end:  # what is left is the checksum, nothing else
            raise _Unsupported("virtual heap block length")
        return out

    def _name(self, blob: bytes, pos: int, shared: int, same_file: int, previous: list, attr: str):
        if same_file:
            return ".", pos
        if shared:
            origin = self.uint(blob, pos, self.l)
            if origin >= len(previous):
                raise _Unsupported("shared name")
            return getattr(previous[origin], attr), pos + self.l
        end = blob.index(b"\0", pos)
        return blob[pos:end].decode("utf-8"), end + 1

    def _selection(self, blob: bytes, pos: int, n: int) -> tuple[_Sel, int]:
        kind, version = self.uint(blob, pos, 4), self.uint(blob, pos + 4, 4)
        pos += 8
        if kind in (_SEL_ALL, _SEL_NONE):
            if version != 1:
                raise _Unsupported("all/none selection version")
            return _Sel("all" if kind == _SEL_ALL else "none"), pos + 8
        if kind == _SEL_HYPERSLABS:
            return self._hyperslabs(blob, pos, version, n)
        raise _Unsupported(f"selection type {kind}")

    def _hyperslabs(self, blob: bytes, pos: int, version: int, n: int) -> tuple[_Sel, int]:
        """Selections of more than ``n`` frames are not believed (nor built: a damaged
        coordinate must not ask for gigabytes)."""
        if version == 1:
            enc, regular, pos = 4, False, pos + 8  # padding, length
        elif version == 2:
            flags, enc, pos = blob[pos], 8, pos + 5  # flags, length
            regular = bool(flags & 0x01)
            if not regular:
                raise _Unsupported("irregular hyperslab version 2")
        elif version == 3:
            flags, enc, pos = blob[pos], blob[pos + 1], pos + 2
            regular = bool(flags & 0x01)
        else:
            raise _Unsupported("hyperslab selection version")
        if enc not in (2, 4, 8):
            raise _Unsupported("hyperslab encoding size")
        rank = self.uint(blob, pos, 4)
        pos += 4
        if rank < 1 or rank > 32:  # H5S_MAX_RANK
            raise _Unsupported("selection rank")
        if regular:
            # per dimension: start, stride, count, block
            raw = _array(blob, pos, 4 * rank, enc, convert=False).reshape(rank, 4)
            if (raw == np.iinfo(raw.dtype).max).any():  # H5S_UNLIMITED, in any encoding size
                raise _Unsupported("unlimited selection")
            dims = raw.astype(np.int64)
            start, stride, count, block = (int(v) for v in dims[0])
            pos += 4 * rank * enc
            if count * block > n or stride < 1 or count < 1 or block < 1:
                raise _Unsupported("selection larger than the dataset")
            first = (start + stride * np.arange(count)[:, None] + np.arange(block)[None, :]).ravel()
            return _Sel("slab", _unique(first), rank, regular=dims[1:]), pos
        nblocks = self.uint(blob, pos, enc if version == 3 else 4)
        pos += enc if version == 3 else 4
        blocks = _array(blob, pos, nblocks * 2 * rank, enc, convert=False).reshape(nblocks, 2, rank)
        pos += nblocks * 2 * rank * enc
        if nblocks and (blocks == np.iinfo(blocks.dtype).max).any():
            raise _Unsupported("unlimited block")
        starts, ends = blocks[:, 0, 0].astype(np.int64), blocks[:, 1, 0].astype(np.int64)
        # blocks may repeat first indices (split along other axes), a few times at most
        if (ends < starts).any() or int((ends - starts + 1).sum()) > 8 * n:
            raise _Unsupported("selection larger than the dataset")
        # the other dimensions' smallest first and largest last over the blocks, and the
        # largest first and smallest last: whole frames make both (0, size - 1)
        others = None
        if nblocks and rank > 1:
            lo, hi = blocks[:, 0, 1:], blocks[:, 1, 1:]
            others = np.stack([lo.min(0), hi.max(0), lo.max(0), hi.min(0)]).astype(np.int64)
        if nblocks and (starts == ends).all():  # one index per block: a master's frame list
            return _Sel("slab", _unique(starts), rank, blocks=others), pos
        first = np.concatenate([np.arange(s, e + 1) for s, e in zip(starts.tolist(), ends.tolist())]) \
            if nblocks else np.arange(0)
        if len(np.unique(first)) > n:
            raise _Unsupported("selection larger than the dataset")
        return _Sel("slab", _unique(first), rank, blocks=others), pos


@dataclass
class _Sel:
    """One serialized selection: its first-dimension indices and, to tell whether it
    takes whole frames, what it selects along the other dimensions."""

    kind: str  # "all", "none", "slab"
    first: np.ndarray | None = None
    rank: int = 0
    #: regular hyperslab: (start, stride, count, block) of each other dimension
    regular: np.ndarray | None = None
    #: irregular: per other dimension, the blocks' (least first, greatest last,
    #: greatest first, least last)
    blocks: np.ndarray | None = None

    def frames(self, shape: tuple) -> np.ndarray | None:
        """The whole frames selected in a dataspace of ``shape`` (first dimension: the
        frames; ``shape[0]`` may be unknown, -1), None if it selects part of a frame."""
        if self.kind == "none":
            return np.arange(0)
        if self.kind == "all":
            return None if shape[0] < 0 else np.arange(shape[0])
        if self.rank != len(shape):
            return None
        dims = np.asarray(shape[1:], dtype=np.int64)
        if self.regular is not None:
            start, stride, count, block = self.regular.T
            covered = np.where(count == 1, block, (count - 1) * stride + block)
            if not ((start == 0) & ((count == 1) | (stride <= block)) & (covered == dims)).all():
                return None
        elif len(dims):
            # every block spans every other dimension whole (first 0, last its size - 1)
            if self.blocks is None:
                return None
            lo_min, hi_max, lo_max, hi_min = self.blocks
            if (lo_min != 0).any() or (lo_max != 0).any() \
                    or (hi_max != dims - 1).any() or (hi_min != dims - 1).any():
                return None
        if self.first is None:
            return None
        if shape[0] >= 0 and len(self.first) and int(self.first.max()) >= shape[0]:
            return None
        return self.first


@dataclass
class _Raw:
    file_name: str
    dataset_name: str
    source: _Sel
    virtual: _Sel


def space_frames(space, shape: tuple) -> np.ndarray | None:
    """The whole frames an h5py dataspace's selection takes in a dataset of ``shape``
    (as ``_Sel.frames``), for mappings HDF5 decoded; None if part of a frame."""
    kind = space.get_select_type()
    if kind == h5py.h5s.SEL_ALL:
        return _Sel("all").frames(shape)
    if kind == h5py.h5s.SEL_NONE:
        return _Sel("none").frames(shape)
    if kind != h5py.h5s.SEL_HYPERSLABS:
        return None  # points: any order, any part
    rank = space.get_simple_extent_ndims()
    if space.is_regular_hyperslab():
        regular = space.get_regular_hyperslab()
        if any(int(x) >= h5py.h5s.UNLIMITED for v in regular for x in v):
            return None  # an unlimited selection: its frames are the sources' extent
        start, stride, count, block = (np.asarray(v, dtype=np.int64) for v in regular)
        first = (start[0] + stride[0] * np.arange(count[0])[:, None] + np.arange(block[0])[None, :]).ravel()
        return _Sel("slab", _unique(first), rank,
                    regular=np.stack([start, stride, count, block], axis=1)[1:]).frames(shape)
    blocks = np.asarray(space.get_select_hyper_blocklist(), dtype=np.int64).reshape(-1, 2, rank)
    first = np.concatenate([np.arange(s, e + 1) for s, e in blocks[:, :, 0].tolist()]) if len(blocks) else np.arange(0)
    others = None
    if len(blocks) and rank > 1:
        lo, hi = blocks[:, 0, 1:], blocks[:, 1, 1:]
        others = np.stack([lo.min(0), hi.max(0), lo.max(0), hi.min(0)])
    return _Sel("slab", _unique(first), rank, blocks=others).frames(shape)


def _whole_frames(shape: tuple, raw: list[_Raw], source_point: Callable[[str, str], tuple | None]
                  ) -> list[VdsMapping] | None:
    """The mappings as whole frames, or None when one of them is anything else."""
    frame = tuple(shape[1:])
    out = []
    for m in raw:
        vframes = m.virtual.frames(shape)
        if vframes is None:
            return None
        point = source_point(m.file_name, m.dataset_name)
        if point is None or squeezed(point) != squeezed(frame):
            return None  # a source frame that is not one of our frames: HDF5 pairs the points
        sframes = m.source.frames((len(vframes) if m.source.kind == "all" else -1, *point))
        if sframes is None or len(sframes) != len(vframes):
            return None
        extent = int(sframes.max()) + 1 if len(sframes) else 0
        out.append(VdsMapping(vframes, m.file_name, m.dataset_name, sframes, (extent, *point), frame))
    return out



_checksum = None


def _metadata_checksum():
    """HDF5's own checksum of metadata (Jenkins lookup3), from the HDF5 library h5py runs
    on: a Python lookup3 would cost a master's megabytes a second. None if not found."""
    global _checksum
    if _checksum is None:
        _checksum = False
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "/libhdf5" in line and "_hl" not in line}
            for path in sorted(p for p in paths if re.search(r"/libhdf5[-.][^/]*\.so", p)):
                fn = ctypes.CDLL(path).H5_checksum_metadata
                fn.restype, fn.argtypes = ctypes.c_uint32, [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32]
                _checksum = fn
                break
        except (OSError, AttributeError):
            _checksum = False
    return _checksum or None


def _checksum_ok(blob: bytes, start: int, end: int) -> bool:
    """The block's checksum is right: bytes damaged anywhere in it are never read as
    mappings. Without HDF5's checksum function, nothing is believed (HDF5 decodes)."""
    fn = _metadata_checksum()
    if fn is None or end - start < 5:
        return False
    body = blob[start:end - 4]
    return fn(body, len(body), 0) == int.from_bytes(blob[end - 4:end], "little")


def _array(blob: bytes, pos: int, n: int, enc: int, convert: bool = True) -> np.ndarray:
    """``n`` coordinates at ``pos`` (int64; ``convert=False``: a view of the bytes)."""
    if pos + n * enc > len(blob):
        raise _Unsupported("selection past its block")
    raw = np.frombuffer(blob, dtype=f"<u{enc}", count=n, offset=pos)
    return raw.astype(np.int64) if convert else raw


def _unique(values: np.ndarray) -> np.ndarray:
    """Values in first-seen order, each once (blocks of several dimensions repeat it)."""
    if len(values) < 2 or (np.diff(values) > 0).all():
        return values
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


__all__ = ["VirtualLayout", "read_virtual_layout", "space_frames"]
