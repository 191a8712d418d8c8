"""Creating new HDF5 groups, attributes and small datasets through h5py's low-level API.

A scan's entry is a few dozen groups, datasets and attributes; for short scans
(hundreds of 10-point scans back to back) creating them is most of the writer's
time. h5py's high-level calls do much more than create: a new link creation
property list per call, name checks, and for attributes a temporary attribute
that is renamed (so that an existing one can be replaced); the low-level calls made here
take a half to a third of that time (doc/benchmarks.md). The objects are the same as h5py makes them (types, creation order
tracking, no time stamps), so readers cannot tell (tests/unit/io/test_io_objects.py).

Only for objects known to be new (the tree writer checked, or created the
parent itself): HDF5 refuses to create over an existing name, which raises
here too. Names are single path components (no "/": the plan's names are
checked NeXus names); non-ASCII names are flagged UTF-8 (h5py flags dataset
links ASCII whatever their bytes). Values these functions do not handle return
None/False, and the caller uses h5py's high-level call.
"""

from __future__ import annotations

from collections.abc import Sequence

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5o, h5p, h5s, h5t

from ..h5map import VirtualSource

# Created once: property lists and types are immutable once passed to HDF5.
_TRACKED = h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED
_GCPL = h5p.create(h5p.GROUP_CREATE)
_GCPL.set_link_creation_order(_TRACKED)  # as h5py's create_group(track_order=True)
_GCPL.set_attr_creation_order(_TRACKED)
_GCPL.set_obj_track_times(False)  # as h5py's create_group (no time stamps: reproducible files)
_DCPL = h5p.create(h5p.DATASET_CREATE)
_DCPL.set_obj_track_times(False)  # as h5py's create_dataset (track_times=False)
#: small fields are stored in their object header (compact layout) instead of a block of
#: their own: one allocation less per field, and a reader gets the value with the header
#: (every HDF5 reads them; h5py's default is contiguous)
_DCPL_COMPACT = _DCPL.copy()
_DCPL_COMPACT.set_layout(h5d.COMPACT)
#: bytes of a field's data up to which it is compact (HDF5's limit is 64 kB per header message)
COMPACT_BYTES = 4096
_LCPL_UTF8 = h5p.create(h5p.LINK_CREATE)
_LCPL_UTF8.set_char_encoding(h5t.CSET_UTF8)
_STR = h5t.py_create(h5py.string_dtype(), logical=True)  # variable-length UTF-8, as h5py
_SCALAR = h5s.create(h5s.SCALAR)
#: numpy kinds HDF5 stores as plain numbers (bool as h5py's enum)
PLAIN_KINDS = "biuf"


def link_name(name: str) -> tuple[bytes, h5p.PropLCID | None]:
    encoded = name.encode("utf-8")
    return encoded, (None if encoded.isascii() else _LCPL_UTF8)


def _typed(value) -> tuple[np.ndarray, h5t.TypeID] | None:
    """(array, file type) for strings and plain numbers; None for anything else."""
    if isinstance(value, str):
        return np.array(value, dtype=h5py.string_dtype()), _STR
    if not isinstance(value, np.ndarray):
        return None
    if value.dtype.kind in PLAIN_KINDS and value.size:
        return value, h5t.py_create(value.dtype, logical=True)
    info = h5t.check_string_dtype(value.dtype) if value.dtype.kind == "O" else None
    if info is not None and info.encoding == "utf-8" and info.length is None and value.size:
        return value, _STR
    return None


def _space(array: np.ndarray) -> h5s.SpaceID:
    return _SCALAR if array.ndim == 0 else h5s.create_simple(array.shape)


def new_group(parent: h5py.Group, name: str) -> h5py.Group:
    encoded, lcpl = link_name(name)
    return h5py.Group(h5g.create(parent.id, encoded, lcpl=lcpl, gcpl=_GCPL))


def new_attr(obj: h5py.HLObject | h5o.ObjectID, name: str, value) -> bool:
    """False if not created here (the caller uses ``obj.attrs``)."""
    typed = _typed(value)
    if typed is None or not name.isascii():
        return False
    array, tid = typed
    loc = obj.id if isinstance(obj, h5py.HLObject) else obj
    attr = h5a.create(loc, name.encode(), tid, _space(array))
    try:
        attr.write(np.ascontiguousarray(array), mtype=h5t.py_create(array.dtype))
    except BaseException:  # e.g. a string HDF5 cannot encode: no empty attribute left behind
        attr.close()
        h5a.delete(loc, name.encode())
        raise
    return True


def text_attr(loc: h5o.ObjectID, name: str) -> str | None:
    """A scalar text attribute of ``loc`` (None if there is none or it holds something else)."""
    encoded = name.encode()
    if not h5a.exists(loc, encoded):
        return None
    attr = h5a.open(loc, encoded)
    if attr.shape != () or h5t.check_string_dtype(attr.dtype) is None:
        return None
    value = np.empty((), dtype=attr.dtype)
    attr.read(value, mtype=h5t.py_create(attr.dtype))
    text = value[()]
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def replace_attr(obj: h5py.HLObject, name: str, value) -> None:
    """``obj.attrs[name] = value``. A text attribute that holds text is written over in place
    (the file's ``default``, at every scan: a new attribute in the root's dense attribute
    storage costs ten times more); others are made again, last in creation order as h5py does."""
    typed = _typed(value)
    if typed is None or not name.isascii():
        obj.attrs[name] = value
        return
    loc, encoded = obj.id, name.encode()
    if h5a.exists(loc, encoded):
        attr = h5a.open(loc, encoded)
        array, tid = typed
        if tid is _STR and array.ndim == 0 and attr.shape == () and attr.get_type().equal(_STR):
            attr.write(np.ascontiguousarray(array), mtype=h5t.py_create(array.dtype))
            return
        attr.close()
        h5a.delete(loc, encoded)
    new_attr(loc, name, value)


def root_of(obj: h5py.HLObject) -> h5py.Group:
    """The file's root group, opened from any of its objects (cheaper than ``obj.file``)."""
    return h5py.Group(h5o.open(obj.id, b"/"))


def new_field(parent: h5py.Group, name: str, value) -> h5py.Dataset | None:
    """A small dataset holding ``value`` (compact up to ``COMPACT_BYTES``, else contiguous as
    h5py makes it); None if not handled."""
    typed = _typed(value)
    if typed is None:
        return None
    array, tid = typed
    encoded, lcpl = link_name(name)
    # (variable-length strings hold 16-byte references to the global heap in the header)
    nbytes = array.size * (16 if tid is _STR else array.dtype.itemsize)
    dcpl = _DCPL_COMPACT if nbytes <= COMPACT_BYTES else _DCPL
    dset = h5d.create(parent.id, encoded, tid, _space(array), dcpl=dcpl, lcpl=lcpl)
    dset.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(array))
    return h5py.Dataset(dset)


def _select(space: h5s.SpaceID, sel) -> h5s.SpaceID:
    """``space`` with a blissdata.h5map ``SpaceSelection`` (start, count, stride, block) selected."""
    n = len(sel.start)
    space.select_hyperslab(tuple(sel.start), tuple(sel.count), tuple(sel.stride or (1,) * n),
                           tuple(sel.block or (1,) * n))
    return space


def selection_extent(sel) -> tuple[int, ...]:
    """The smallest dataset shape that contains the selection."""
    n = len(sel.start)
    stride, block = sel.stride or [1] * n, sel.block or [1] * n
    return tuple(s + (c - 1) * t + b for s, c, t, b in zip(sel.start, sel.count, stride, block))


def new_virtual(parent: h5py.Group, name: str, dtype: np.dtype, shape: tuple, sources: Sequence[VirtualSource],
                src_shapes: Sequence[tuple], fill) -> h5py.Dataset:
    """A virtual dataset from the plan's sources (hyperslabs: parts of frames allowed) and
    each source dataset's shape (``src_shapes[i]``, as far as known: HDF5 needs one).

    h5py's ``VirtualSource[...]`` deep-copies the source for every selection: for a scan's
    many lima files, more than HDF5's own work.
    """
    if len(sources) != len(src_shapes):
        raise ValueError(f"{len(sources)} virtual sources for {len(src_shapes)} source shapes")
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.array(fill))  # HDF5 converts, as with h5py
    vspace = h5s.create_simple(shape)
    for vs, src_shape in zip(sources, src_shapes):
        dcpl.set_virtual(_select(vspace.copy(), vs.vspace), vs.src_file.encode("utf-8"),
                         vs.src_dataset.encode("utf-8"), _select(h5s.create_simple(tuple(src_shape)), vs.src_space))
    encoded, lcpl = link_name(name)
    return h5py.Dataset(h5d.create(parent.id, encoded, h5t.py_create(dtype, logical=True), vspace,
                                   dcpl=dcpl, lcpl=lcpl))


def new_soft_link(parent: h5py.Group, name: str, target: str) -> None:
    encoded, lcpl = link_name(name)
    parent.id.links.create_soft(encoded, target.encode("utf-8"), lcpl=lcpl)


def mark_target(h5: h5py.Group, target: str) -> bool:
    """NeXus ``@target`` on a link's destination (kept if already there); False if it does not exist.
    ``h5``: any group of the file (``target`` is absolute)."""
    try:
        oid = h5o.open(h5.id, target.encode("utf-8"))
    except KeyError:
        return False
    if not h5a.exists(oid, b"target"):
        new_attr(oid, "target", target)
    return True


__all__ = ["new_group", "new_attr", "new_field", "text_attr", "replace_attr", "root_of", "new_virtual",
           "new_soft_link", "mark_target", "link_name", "selection_extent", "PLAIN_KINDS"]
