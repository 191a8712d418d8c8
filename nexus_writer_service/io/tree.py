"""Materialise a ``blissdata.h5map`` tree with h5py.

Datasets whose value is a blissdata ``Stream`` reference become growing
datasets (the caller gets them back to append to). Every soft link gets the
NeXus ``@target`` attribute on its destination, so validators and tools can
tell a link from a copy.

A reader without the filter plugin of a dataset gets an error, not the data: so
the file says which plugins its data need, in the root attribute
``required_filter_plugins`` (all entries of the file) and in each entry's
``writer/required_filter_plugins`` ("none": every HDF5 reader opens it).
"""

from __future__ import annotations

import logging
import posixpath

import h5py
import numpy as np
from ..h5map import (
    Dataset,
    ExternalBinaryDataset,
    ExternalLink,
    Group,
    InlineRaw,
    SoftLink,
    Stream,
    VirtualDataset,
)

from ..fillvalues import fill_value
from ..records import NOTE, NOTE_GROUP
from ..compression import required_plugins
from .arrays import ArraySpec, GrowingDataset
from .objects import (
    link_name,
    mark_target,
    new_attr,
    new_field,
    new_group,
    new_soft_link,
    new_virtual,
    replace_attr,
    root_of,
    selection_extent,
    text_attr,
)

_logger = logging.getLogger(__name__)


def _decoded(item):
    # plan nodes built by pydantic hold DataItems; ones added later may hold raw values.
    # InlineRaw (most of them) holds the validated array already: its decode() would
    # serialise it and turn strings to bytes (np.vectorize), undone just below.
    if isinstance(item, InlineRaw):
        value = item.root
    else:
        value = item.decode() if hasattr(item, "model_dump") else np.asarray(item)
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
        if value.ndim == 0:
            return _text(value.item())
        return np.asarray([_text(v) for v in value.ravel()], dtype=h5py.string_dtype()).reshape(value.shape)
    return value


def _text(v) -> str:
    """HDF5 variable-length strings end at a NUL: an embedded one (any user string in
    scan_info can hold one) would fail the write, so it is kept visibly as \\x00."""
    text = v.decode() if isinstance(v, bytes) else str(v)
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def _set_attrs(obj, attributes: dict, new: bool = False) -> None:
    """``new``: ``obj`` was just created, none of these attributes exists (faster)."""
    for name, item in attributes.items():
        value = _decoded(item)
        if new and new_attr(obj, name, value):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            obj.attrs.create(name, value, dtype=h5py.string_dtype())
        else:
            obj.attrs[name] = value


def _absolute_targets(group: Group):
    """The absolute destinations of the soft links below ``group``."""
    for child in group.children.values():
        if isinstance(child, SoftLink):
            if child.target_path.startswith("/"):
                yield child.target_path
        elif isinstance(child, Group):
            yield from _absolute_targets(child)


def set_attributes(obj, attributes: dict) -> None:
    """Write plan attributes on an existing object (the file's root), replacing any there."""
    _set_attrs(obj, attributes)


class TreeWriter:
    """Writes plan trees below an h5py group; collects streams and links."""

    def __init__(self, specs: dict[str, ArraySpec] | None = None, resume: bool = False):
        self.specs = specs or {}
        #: reopen stream datasets that exist already (a restarted writer continues them)
        self.resume = resume
        self.streams: dict[str, GrowingDataset] = {}
        self._links: list[tuple[h5py.Group, str, str]] = []
        self.warnings: list[str] = []
        #: filters of the growing datasets this writer created (see required_filter_plugins)
        self.filters: set[str] = set()
        #: virtual datasets this writer created, by path: their ``@target`` is set through this
        #: handle (HDF5 2.0 takes time per strided mapping to open a VDS again, which a
        #: Lima2 detector's many receiver files multiply)
        self._virtuals: dict[str, h5py.Dataset] = {}
        #: (group, length of its path + 1) of the top-level group being written
        self._top: tuple | None = None
        #: (its group, whether it names the filter plugins) of that entry's writer note
        self._note: tuple[h5py.Group, bool] | None = None
        #: (length of the top-level node's path, its path in the file) while it is written
        self._top_path: tuple[int, str] = (0, "")
        #: absolute link destinations inside the node being written; those marked so far
        self._targets: frozenset[str] = frozenset()
        self._marked: set[str] = set()

    def write(self, parent: h5py.Group, name: str, node, replace: frozenset = frozenset(), _path: str = "",
              _new: bool = False, as_name: str | None = None) -> None:
        """``as_name``: the name ``node`` will have in the file (``name`` is where it is built,
        see ``io.entries.create``). ``_new``: ``parent`` was created by this call, nothing to
        merge with (faster)."""
        path = f"{_path}/{name}" if _path else name
        # (the final tree walks every node of the start's again: a link's existence is a few
        # microseconds through the low-level API, h5py's ``get`` makes a link object)
        existing = not _new and parent.id.links.exists(link_name(name)[0])
        if not _path:
            self._begin(path, as_name or name, node)
        if isinstance(node, Group):
            if not existing:
                grp = new_group(parent, name)
                _set_attrs(grp, node.attributes, new=True)
                self._mark_if_target(grp, path)
            else:
                grp = parent[name]
                if not isinstance(grp, h5py.Group):
                    self.warnings.append(f"{grp.name} exists and is not a group: kept as it is")
                    return
                # ``replace`` on a group: its attributes are rewritten (BLISS's end map over its start map)
                rewrite = path in replace
                gid = grp.id
                _set_attrs(grp, {k: v for k, v in node.attributes.items()
                                 if rewrite or k == "default" or not h5py.h5a.exists(gid, k.encode())})
            top = not _path
            if top:  # growing datasets below reopen from this group (it may be moved, see arrays)
                self._top = (grp.id, len(path) + 1)
                self._note = None
            elif name == NOTE_GROUP and "/" not in _path:  # the entry's writer note
                # (one made here holds the plan's children; one already there, the file's)
                self._note = (grp, NOTE.required_filter_plugins in (grp if existing else node.children))
            for cname, child in node.children.items():
                self.write(grp, cname, child, replace, path, not existing)
            if top:
                self._top = None
                self._targets = frozenset()
            if not _path and self.filters:
                self._declare_filters(grp)
            return
        if existing:
            if self.resume and isinstance(node, Dataset) and isinstance(node.value, Stream):
                dset = parent[name]
                if isinstance(dset, h5py.Dataset) and dset.chunks is not None:
                    resumed = self.streams[node.value.stream] = GrowingDataset(dset, self.specs[node.value.stream])
                    resumed.park()
                    return
            if path not in replace:
                return  # never overwrite: a node already written stays
            if isinstance(node, Dataset) and isinstance(node.value, Stream):
                if isinstance(parent[name], h5py.Dataset):  # its data stay: only its attributes change
                    _set_attrs(parent[name], node.attributes)
                return
            del parent[name]
        if isinstance(node, SoftLink):
            self._links.append((parent, name, node.target_path))
        elif isinstance(node, ExternalLink):
            parent[name] = h5py.ExternalLink(node.target_file, node.target_path)
        elif isinstance(node, VirtualDataset):
            self._virtual(parent, name, node)
        elif isinstance(node, ExternalBinaryDataset):
            external = [(f.name, f.offset, f.size if f.size is not None else h5py.h5f.UNLIMITED)
                        for f in node.files]
            dset = parent.create_dataset(name, shape=tuple(node.shape), dtype=np.dtype(node.dtype),
                                         external=external)
            _set_attrs(dset, node.attributes, new=True)
        elif isinstance(node, Dataset):
            fresh = True  # no attribute yet
            array: GrowingDataset | None = None
            if isinstance(node.value, Stream):
                spec = self.specs[node.value.stream]
                anchor = (self._top[0], path[self._top[1]:]) if self._top else None
                array = GrowingDataset.create(parent, name, spec, anchor)
                self.filters.add(spec.filter)
                self.streams[node.value.stream] = array
                dset = array.dset
                fresh = -1 not in spec.point_shape  # ragged data got @fill_value already
            else:
                value = _decoded(node.value)
                dset = new_field(parent, name, value)
                if dset is None:  # empty arrays, unusual types: h5py knows them all
                    kind = {"dtype": h5py.string_dtype()} if isinstance(value, str) else {}
                    dset = parent.create_dataset(name, data=value, **kind)
            _set_attrs(dset, node.attributes, new=fresh)
            self._mark_if_target(dset, path)
            if array is not None:
                array.park()  # closed until its first append unless it holds an open slot
        else:
            self.warnings.append(f"{parent.name}/{name}: unsupported plan node {type(node).__name__}")

    def _begin(self, path: str, final_name: str, node) -> None:
        """Before a top-level node: the link destinations inside it, marked as they are made
        (reopening each by path afterwards, ``mark_target``, is most of a link's cost)."""
        top = "/" + final_name
        self._top_path = (len(path), top)
        self._targets = frozenset(_absolute_targets(node)) if isinstance(node, Group) else frozenset()

    def _mark_if_target(self, obj, path: str) -> None:
        if self._targets:
            final = self._top_path[1] + path[self._top_path[0]:]
            if final in self._targets and not h5py.h5a.exists(obj.id, b"target"):
                new_attr(obj, "target", final)
                self._marked.add(final)

    def _declare_filters(self, entry: h5py.Group) -> None:
        """The plugins the data below ``entry`` need: in its writer note and, for the
        whole file, in the root attribute (plugins of earlier entries are kept)."""
        plugins = required_plugins(self.filters)
        if self._note is not None and not self._note[1]:  # (the note, whether it says them already)
            new_field(self._note[0], NOTE.required_filter_plugins, "; ".join(plugins) or "none")
        root = root_of(entry)
        before = text_attr(root.id, "required_filter_plugins")
        known = sorted(({p for p in (before or "").split("; ") if p and p != "none"}) | set(plugins))
        value = "; ".join(known) or "none"
        if value != before:
            replace_attr(root, "required_filter_plugins", value)

    def write_at(self, h5: h5py.File, parent_path: str, name: str, node, replace: bool = False) -> None:
        """Write ``node`` as ``parent_path/name`` (the parent exists); ``replace``: an item
        already there is deleted first (a virtual dataset that grew)."""
        parent = h5[parent_path]
        if replace and name in parent:
            del parent[name]
        self.write(parent, name, node, _path=parent_path)

    def _virtual(self, parent: h5py.Group, name: str, node: VirtualDataset) -> None:
        dtype = np.dtype(node.dtype)
        src_shapes = []
        for vs in node.virtual_sources:
            if vs.src_file == ".":
                src_shapes.append(parent.file[vs.src_dataset].shape)
            else:  # another file (lima's): the selection tells how large it is at least
                src_shapes.append(selection_extent(vs.src_space))
        # what stands for missing frames/points: the plan's, else the one rule (fillvalues)
        declared = node.attributes.get("fill_value")
        fill = _decoded(declared) if declared is not None else fill_value(dtype)
        dset = new_virtual(parent, name, dtype, tuple(node.shape), node.virtual_sources, src_shapes, fill)
        self._virtuals[dset.name] = dset
        _set_attrs(dset, {"fill_value": fill, **{k: v for k, v in node.attributes.items() if k != "fill_value"}})
        if node.virtual_sources and node.virtual_sources[0].src_file == ".":
            self._target(parent.file, node.virtual_sources[0].src_dataset, mark=False)

    def finish_links(self) -> None:
        """Create the soft links once their destinations exist, with ``@target``."""
        for parent, name, target in self._links:
            new_soft_link(parent, name, target)
            if target in self._marked:
                continue
            # a relative target (BLISS's maps have some) is resolved from the link's group;
            # an absolute one from any object of the file (no File object made per link)
            self._target(parent, target if target.startswith("/") else
                         posixpath.normpath(posixpath.join(parent.name, target)))
        self._links = []
        self._virtuals = {}
        self._marked = set()

    def _target(self, h5: h5py.Group, target: str, mark: bool = True) -> None:
        """``h5``: any group of the file (``target`` is absolute)."""
        made = self._virtuals.get(target)
        if made is not None and made.id.valid:
            if mark and not h5py.h5a.exists(made.id, b"target"):
                new_attr(made.id, "target", target)
            return
        if not (mark_target(h5, target) if mark else target in h5):
            self.warnings.append(f"link to {target} has no destination")
