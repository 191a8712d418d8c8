"""NeXus naming and tree-building rules, kept in one place.

The plan is a ``blissdata.h5map`` tree (the model BLISS 2.4 itself publishes in
``scan_info["h5maps"]``), so one writing layer materialises both our layout and
whatever BLISS sends. Nothing outside this module sets ``NX_class``; the naming
rules it applies come from ``nxrules`` (shared with the BLISS-side config check).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

import numpy as np
from .h5map import Dataset, Group, Inline, InlineRaw, SoftLink, Stream, VirtualDataset

from .nxrules import ALLOWED_GROUPS, NAME_RE

_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_]")

PRIMARY_FIELDS = ("value", "data", "signal", "spectrum", "image")


#: longest item name written: HDF5 keeps names in object header messages (64 KiB at most,
#: shared with the rest of the group) and tools show names, not essays
MAX_NAME = 200


def safe_name(name: str, default: str = "unnamed") -> str:
    """A NeXus item name derived from an arbitrary channel or key name.

    Channel names come from users and devices: '/', '..', spaces and the like
    must never reach HDF5 as path components. Over ``MAX_NAME`` characters a name is
    cut and ends with a digest of the whole, so two long names stay two names.
    """
    name = _BAD_CHARS.sub("_", str(name)).strip("_")
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_NAME - 11]}_{digest}"
    return name or default


def is_safe_relative_path(path: str) -> bool:
    parts = path.split("/")
    return bool(parts) and all(p and NAME_RE.match(p) and p not in (".", "..") for p in parts)


def unique_name(name: str, taken: set[str]) -> str:
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def group(nx_class: str | None = None, children: dict | None = None, **attrs: Any) -> Group:
    attributes = {k: _attr(v) for k, v in attrs.items() if v is not None}
    if nx_class:
        attributes["NX_class"] = _attr(nx_class)
    return Group(attributes=attributes, children=dict(children or {}))


@lru_cache(maxsize=4096)
def _validated(kind: type, value) -> InlineRaw:
    item = InlineRaw(value)
    item.root.setflags(write=False)  # shared by every plan that uses it
    return item


def _item(value: Any):
    """Names, classes, units and counts recur in every entry of every scan: each is
    validated by h5map once (a validated item is taken as it is, without validating again)."""
    kind: type = type(value)
    if kind in (str, int, bool):
        return _validated(kind, value)
    return value


def _attr(value: Any):
    if isinstance(value, (list, tuple)):
        return np.asarray([str(v) for v in value]) if value else np.asarray([""])
    if isinstance(value, float) and not np.isfinite(value):
        return _float(value)
    return _item(value)


def _float(value: float) -> Inline:
    """A float h5map keeps as it is (NaN, inf): validated into its inline value model."""
    return Inline.model_validate({"dtype": "float64", "value": value})


def attr_value(value: Any):
    """An attribute value as a plan item (NaN and inf kept: h5map refuses them raw)."""
    return _attr(value)


def field(value: Any, **attrs: Any) -> Dataset:
    """A static dataset; None becomes NaN, NaN/inf are kept (h5map refuses them raw)."""
    attributes = {k: _attr(v) for k, v in attrs.items() if v is not None}
    if value is None:
        value = _float(float("nan"))
    elif isinstance(value, float) and not np.isfinite(value):
        value = _float(value)
    elif isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            value = Inline(dtype="float64", value=arr.tolist())
        elif arr.dtype.kind == "O":
            value = np.asarray([str(v) for v in value])
    else:
        value = _item(value)
    return Dataset(attributes=attributes, value=value)


def stream_field(stream_name: str, **attrs: Any) -> Dataset:
    attributes = {k: _attr(v) for k, v in attrs.items() if v is not None}
    return Dataset(attributes=attributes, value=Stream(stream=stream_name))


def link(target: str) -> SoftLink:
    """Soft links are absolute; the writer adds ``@target`` on their destination."""
    if not target.startswith("/"):
        raise ValueError(f"soft link targets are absolute: {target!r}")
    return SoftLink(target_path=target)


def insert(root: Group, path: str, node, nx_class: str = "NXcollection") -> None:
    """Put ``node`` at ``path`` below ``root``, creating missing groups as ``nx_class``."""
    parts = path.split("/")
    parent = root
    for part in parts[:-1]:
        child = parent.children.get(part)
        if child is None:
            child = group(nx_class)
            parent.children[part] = child
        if not isinstance(child, Group):
            raise ValueError(f"{path!r}: {part!r} is not a group")
        parent = child
    parent.children[parts[-1]] = node


def get(root: Group, path: str):
    node: Any = root  # (the path leads through groups to any kind of item)
    for part in path.split("/"):
        node = node.children[part]
    return node


def nx_class(node) -> str | None:
    value = node.attributes.get("NX_class") if isinstance(node, Group) else None
    return str(getattr(value, "root", value)) if value is not None else None


def conform(parent_class: str, children: dict) -> dict:
    """Child groups whose class ``parent_class`` forbids become NXcollection.

    The path and content stay where the user put them; the requested class is
    kept in ``@requested_NX_class`` so nothing is lost.
    """
    allowed = ALLOWED_GROUPS.get(parent_class)
    if allowed is None:
        return children
    for node in children.values():
        cls = nx_class(node)
        if cls is not None and cls not in allowed:
            node.attributes["NX_class"] = "NXcollection"
            node.attributes["requested_NX_class"] = cls
    return children


def merge(into: Group, other: Group) -> None:
    """Add ``other``'s attributes and children to ``into``; existing items win."""
    for k, v in other.attributes.items():
        into.attributes.setdefault(k, v)
    for name, child in other.children.items():
        mine = into.children.get(name)
        if mine is None:
            into.children[name] = child
        elif isinstance(mine, Group) and isinstance(child, Group):
            merge(mine, child)


__all__ = [
    "NAME_RE", "PRIMARY_FIELDS", "safe_name", "is_safe_relative_path", "unique_name",
    "group", "field", "stream_field", "link", "insert", "get", "merge",
    "Group", "Dataset", "SoftLink", "VirtualDataset",
]
