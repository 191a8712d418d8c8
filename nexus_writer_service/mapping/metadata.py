"""Scan metadata (positioners, user scan_meta categories, comments) as plan nodes.

User categories follow silx's NeXus-dict convention (``"@NX_class"`` keys,
``"energy@units"`` attribute keys); ``silx.io.dictdump.nexus_to_h5_dict`` parses
that convention so we do not re-implement it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from silx.io.dictdump import nexus_to_h5_dict

from .nexus import MAX_NAME, Group, conform, field, group, link, safe_name, unique_name

#: scan_meta categories that are not user metadata groups
_NOT_USER_CATEGORIES = {"positioners", "nexuswriter", "instrument"}


def _scalar(value: Any):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            return str(value)
        return value if arr.dtype.kind in "biufU" else [str(v) for v in value]
    return str(value)


def nxdict_to_group(tree: dict, default_class: str = "NXcollection", warnings: list | None = None) -> Group:
    """A scan_meta category (silx NeXus-dict convention) as a plan group.

    Groups left without children (BLISS's default categories are ``{"@NX_class": ...}``
    alone; a value of None is dropped) are left out: a group is written when it has
    content, or not at all. The returned group itself may be empty: see ``is_empty``.
    Keys that HDF5 cannot take as they are (too long, characters that are not NeXus)
    are renamed, never merged with another key; ``warnings`` gets a line for each
    key shortened.
    """
    h5dict = nexus_to_h5_dict(tree, add_nx_class=False)
    return _h5dict_group(h5dict, default_class, warnings if warnings is not None else [])


def is_empty(grp: Group | None) -> bool:
    """True for a group without children (its attributes alone are no content)."""
    return grp is None or not grp.children


def _attr_name(name: str) -> str:
    # HDF5 attribute names end at a NUL: keep what follows, visibly
    return str(name).replace("\x00", "\\x00")


def _h5dict_group(h5dict: dict, default_class: str, warnings: list) -> Group:
    # one NeXus name per key, distinct even when two keys clean up alike ("a/b", "a_b")
    taken: set[str] = set()
    names: dict = {}
    for key in h5dict:
        name = key[0] if isinstance(key, tuple) else key
        if name != "" and name not in names:
            names[name] = unique_name(safe_name(name), taken)
            if len(str(name)) > MAX_NAME:
                warnings.append(f"metadata key {str(name)[:40]!r}... ({len(str(name))} characters) "
                                f"written as {names[name]!r}")
    attrs: dict[str, Any] = {}
    field_attrs: dict[str, dict] = {}
    for key, value in h5dict.items():
        if isinstance(key, tuple):
            name, attr = key
            if not attr:  # "energy@": HDF5 has no nameless attributes
                continue
            if len(str(attr)) > MAX_NAME:
                warnings.append(f"metadata attribute {str(attr)[:40]!r}... ({len(str(attr))} characters) dropped")
                continue
            target = attrs if name == "" else field_attrs.setdefault(names[name], {})
            target[_attr_name(attr)] = _scalar(value)
    children: dict = {}
    for key, value in h5dict.items():
        if isinstance(key, tuple):
            continue
        if isinstance(value, dict):
            child = _h5dict_group(value, "NXcollection", warnings)
            if not is_empty(child):
                children[names[key]] = child
        elif value is not None:
            children[names[key]] = field(_scalar(value), **field_attrs.get(names[key], {}))
    nx_class = attrs.pop("NX_class", None) or default_class
    return group(nx_class, children, **attrs)


def user_categories(info: dict, warnings: list | None = None) -> dict[str, Group]:
    """Entry-level groups from scan_meta categories (sample, technique, user ones)."""
    out = {}
    for cat in info.get("scan_meta_categories") or []:
        if cat in _NOT_USER_CATEGORIES or not isinstance(info.get(cat), dict):
            continue
        default = "NXsample" if cat == "sample" else "NXcollection"
        grp = nxdict_to_group(info[cat], default, warnings)
        if not is_empty(grp):  # e.g. BLISS's default 'technique': {"@NX_class": "NXcollection"}
            out[safe_name(cat)] = grp
    return conform("NXentry", out)


def user_instrument(info: dict, warnings: list | None = None) -> Group | None:
    inst = info.get("instrument")
    if not isinstance(inst, dict):
        return None
    grp = nxdict_to_group(inst, "NXinstrument", warnings)
    if is_empty(grp):
        return None
    conform("NXinstrument", grp.children)
    return grp


def instrument_name(info: dict) -> dict:
    """The session's instrument name (BLISS config ``instrument``, via our generators)."""
    iinfo = ((info.get("nexuswriter") or {}).get("instrument_info") or {})
    name = iinfo.get("name") or ""
    short = iinfo.get("name@short_name") or ""
    if not name:
        return {}
    return {"name": field(name, short_name=short or None)}


def positioners(info: dict, scanned: dict[str, str], only: list[str] | None = None) -> dict:
    """instrument/positioners (+ _start/_end/_dial_*): every session motor, or ``only`` those.

    ``scanned`` maps a motor name to the absolute path of its scanned array:
    ``positioners/<motor>`` links there instead of holding the start value.
    """
    pos = info.get("positioners") or {}
    units = pos.get("positioners_units") or {}
    out: dict = {}

    def recorded(values):
        if isinstance(values, dict) and only is not None:
            return {m: v for m, v in values.items() if m in only}
        return values

    for key in ("positioners_start", "positioners_end", "positioners_dial_start", "positioners_dial_end"):
        values = recorded(pos.get(key))
        if isinstance(values, dict) and values:
            out[key] = group("NXcollection", {
                safe_name(m): field(_scalar(v), units=units.get(m)) for m, v in values.items()
            })
    start = recorded(pos.get("positioners_start")) or {}
    if start or scanned:
        children = {safe_name(m): field(_scalar(v), units=units.get(m)) for m, v in start.items()}
        for motor, target in scanned.items():
            children[safe_name(motor)] = link(target)
        out["positioners"] = group("NXcollection", children)
    return out


def notes(info: dict) -> dict:
    """BLISS comments (scan.add_comment) in order, with their dates, as entry/notes."""
    comments = [c for c in info.get("comments") or [] if isinstance(c, dict)]
    if not comments:
        return {}
    messages = [str(c.get("message", "")) for c in comments]
    dates = [str(c.get("date", "")) for c in comments]
    return {"notes": group("NXnote", {
        "type": field("text/plain"),
        "date": field(dates[0]),
        # NXnote/data is NX_BINARY: the readable text goes to description (NX_CHAR)
        "description": field("\n".join(f"{d} {m}" for d, m in zip(dates, messages))),
        "messages": field(messages),
        "dates": field(dates),
    })}
