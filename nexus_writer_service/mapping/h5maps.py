"""BLISS 2.4's ``scan_info["h5maps"]`` merged into our plan (pure: no Redis, no files).

BLISS 2.4 publishes, at PREPARING and again at the end, the tree it wants in each file
(``{absolute file path: blissdata.h5map tree of the file's root}``): ESRF's layout made
static. Its items are all written; ours go beside them. Where both say something different
at the same path (value, type, NX class or any attribute) the map wins, and the scan says
so once, listing the paths. Exceptions, each for a reason:

- a ``Stream`` item is where the map places our growing dataset of that stream (ours moves
  there, its old path becomes a link and our links follow it); a stream placed twice is
  one dataset and a link (one growing dataset per stream), a stream written by a kind of
  its own (detector files) is a link to that kind's node, a stream we do not write is
  skipped with a warning;
- our writer note (``writer``) stays ours: it says whether the entry is complete, which
  no map can know in advance;
- ``end_time`` is written at the end only: readers of BLISS files take it as "entry complete";
- a ``VirtualDataset`` whose source files do not exist is skipped with a warning (ESRF's
  writer 3.0 writes none; we write those we can);
- entries of the map that are not the scan's entries in our file are not written (warned).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field as dc_field
from typing import Callable

import numpy as np
from pydantic import ValidationError

from ..h5map import Dataset, Group, HDF5Item, InlineRaw, SoftLink, Stream, VirtualDataset
from ..records import NOTE_GROUP


@dataclass
class Merged:
    #: the file's root: our entries with the map's items
    tree: Group
    #: "path: what differed" for each item where the map overrode ours
    conflicts: list[str] = dc_field(default_factory=list)
    #: map items not written, and why
    warnings: list[str] = dc_field(default_factory=list)


def file_map(info: dict, path: str) -> tuple[Group | None, list[str], list[str]]:
    """(the map of ``path`` in ``info["h5maps"]`` or None, warnings, debug notes).

    Maps of other files (a scan's own file beside the dataset file) are not ours: noted
    for the debug log only. A map that does not parse is a warning, never a failed scan."""
    maps = info.get("h5maps")
    if maps is None:
        return None, [], []
    if not isinstance(maps, dict):
        return None, [f"scan_info['h5maps'] is a {type(maps).__name__}, not a mapping: ignored"], []
    ours = posixpath.normpath(path)
    found, notes = None, []
    for key, raw in maps.items():
        if posixpath.normpath(str(key)) != ours:
            notes.append(f"h5maps: {key} is not the file written here ({path}): ignored")
            continue
        found = raw
    if found is None:
        return None, [], notes
    try:
        tree = HDF5Item.validate_python(found)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        return None, [f"scan_info['h5maps'][{path!r}] is not a valid h5map ({where}: {err.get('msg')}):"
                      " our layout alone is written"], notes
    if not isinstance(tree, Group):
        return None, [f"scan_info['h5maps'][{path!r}] is a {type(tree).__name__}, not the file's root group:"
                      " our layout alone is written"], notes
    return tree, [], notes


def merge(ours: Group, the_map: Group, streams: dict[str, str], appended: set[str],
          source_exists: Callable[[str], bool], final: bool) -> Merged:
    """``ours``: the file's root with our entries (changed in place: the result holds it).

    ``streams``: stream -> absolute path of our node for it; ``appended``: the streams we
    write as growing datasets; ``source_exists``: whether a VDS source file exists;
    ``final``: the map of the scan's end (before it, ``end_time`` is left out and streams
    written by their kinds, whose nodes come at the end, are not linked yet).
    """
    the_map = the_map.model_copy(deep=True)
    out = Merged(ours)
    for name in list(the_map.children):
        if name not in ours.children:
            out.warnings.append(f"h5maps: entry {name} is not written here (not one of this scan's"
                                f" entries: {', '.join(ours.children) or 'none'})")
            del the_map.children[name]
        elif not final:
            entry = the_map.children[name]
            if isinstance(entry, Group):
                entry.children.pop("end_time", None)
    for name, entry in the_map.children.items():
        note = entry.children.get(NOTE_GROUP) if isinstance(entry, Group) else None
        if isinstance(entry, Group) and note is not None:
            out.warnings.append(f"h5maps: /{name}/{NOTE_GROUP} not written: the writer's note is the writer's")
            del entry.children[NOTE_GROUP]
    moves = _place_streams(the_map, streams, appended, source_exists, final, out.warnings)
    for old, new in moves.items():
        node = _pop(ours, old)
        if node is not None:
            _put(ours, new, node)
            _put(ours, old, SoftLink(target_path=new))
    if moves:
        _retarget(ours, moves)
    for name, entry in the_map.children.items():
        ours.children[name] = _overlay(entry, ours.children[name], f"/{name}", out.conflicts)
    for k, v in the_map.attributes.items():
        if k in ours.attributes and not same(ours.attributes[k], v):
            out.conflicts.append(f"/@{k}: {_text(v)!r} (ours: {_text(ours.attributes[k])!r})")
        ours.attributes[k] = v
    return out


def changed(written: Group, the_map: Group, path: str = "") -> set[str]:
    """Paths of the map's items that differ from what was ``written`` (groups: their
    attributes): what the end map rewrites over the start's tree."""
    out: set[str] = set()
    for name, node in the_map.children.items():
        where = f"{path}/{name}" if path else name
        before = written.children.get(name)
        if isinstance(node, Group):
            if not isinstance(before, Group):
                out.add(where)
                continue
            if not _covers(before, node):
                out.add(where)
            out |= changed(before, node, where)
        elif isinstance(before, Group):
            continue  # never a group (and what it holds) deleted for a dataset: kept as written
        elif before is None or not _covers(before, node):
            out.add(where)
    return out


def conflict_warning(conflicts: list[str]) -> str:
    return (f"h5maps: {len(conflicts)} item(s) of BLISS's map differ from the writer's layout, the map's"
            f" written: {'; '.join(conflicts)}")


def stream_items(tree: Group, path: str = "") -> list[tuple[str, str]]:
    """(absolute path, stream) of every ``Stream`` dataset of ``tree``, in tree order."""
    out = []
    for name, node in tree.children.items():
        where = f"{path}/{name}"
        if isinstance(node, Group):
            out += stream_items(node, where)
        elif isinstance(node, Dataset) and isinstance(node.value, Stream):
            out.append((where, node.value.stream))
    return out


def _place_streams(the_map: Group, streams: dict[str, str], appended: set[str],
                   source_exists: Callable[[str], bool], final: bool, warnings: list[str]) -> dict[str, str]:
    """Stream items as this writer writes them (see the module's rules); returns our moves
    (our path -> the map's)."""
    placed: dict[str, str] = {}
    moves: dict[str, str] = {}
    for where, stream in stream_items(the_map):
        if stream in appended:
            first = placed.setdefault(stream, where)
            if first != where:
                _put(the_map, where, SoftLink(target_path=first))
            elif streams.get(stream) not in (None, where):
                moves[streams[stream]] = where
        elif stream in streams:
            if final:
                _put(the_map, where, SoftLink(target_path=streams[stream]))
            else:
                _pop(the_map, where)  # the kind's node exists at the end only
        else:
            warnings.append(f"h5maps: {where}: stream {stream!r} is not written by this writer: skipped")
            _pop(the_map, where)
    for where, node in list(_virtuals(the_map)):
        missing = sorted({s.src_file for s in node.virtual_sources
                          if s.src_file != "." and not source_exists(s.src_file)})
        if missing:
            warnings.append(f"h5maps: {where}: virtual dataset not written, source file(s) missing:"
                            f" {', '.join(missing)}")
            _pop(the_map, where)
    return moves


def _virtuals(tree: Group, path: str = ""):
    for name, node in tree.children.items():
        where = f"{path}/{name}"
        if isinstance(node, Group):
            yield from _virtuals(node, where)
        elif isinstance(node, VirtualDataset):
            yield where, node


def _overlay(theirs, mine, path: str, conflicts: list[str]):
    """``theirs`` (the map's) with ``mine`` beside it; the map wins, differences listed."""
    if isinstance(theirs, Group) and isinstance(mine, Group):
        _merge_attrs(theirs, mine, path, conflicts)
        for name, child in mine.children.items():
            other = theirs.children.get(name)
            theirs.children[name] = child if other is None else _overlay(other, child, f"{path}/{name}", conflicts)
        return theirs
    if isinstance(theirs, SoftLink) and isinstance(mine, SoftLink) and \
            _resolved(theirs.target_path, path) == _resolved(mine.target_path, path):
        return theirs  # the same destination, relative (BLISS's) or absolute (ours)
    if isinstance(theirs, Dataset) and isinstance(mine, Dataset) and same(theirs.value, mine.value):
        _merge_attrs(theirs, mine, path, conflicts)
        return theirs
    if not same_node(theirs, mine):
        conflicts.append(f"{path}: {_describe(theirs)} (ours: {_describe(mine)})")
    return theirs


def _resolved(target: str, link_path: str) -> str:
    return target if target.startswith("/") else posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))


def _merge_attrs(theirs, mine, path: str, conflicts: list[str]) -> None:
    for k, v in mine.attributes.items():
        other = theirs.attributes.get(k)
        if other is None:
            theirs.attributes[k] = v
        elif not same(other, v):
            conflicts.append(f"{path}@{k}: {_text(other)!r} (ours: {_text(v)!r})")


def _describe(node) -> str:
    if isinstance(node, Group):
        return f"group {_text(node.attributes.get('NX_class', ''))}".rstrip()
    if isinstance(node, SoftLink):
        return f"link to {node.target_path}"
    if isinstance(node, Dataset):
        if isinstance(node.value, Stream):
            return f"stream {node.value.stream}"
        return f"dataset {_text(node.value)!r}"
    return type(node).__name__


def _text(item) -> str:
    value = _plain(item)
    text = str(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(item):
    """A plan item (pydantic data item, or a raw value added after validation) as numpy."""
    if isinstance(item, InlineRaw):
        value = item.root
    elif hasattr(item, "decode") and hasattr(item, "model_dump"):
        value = item.decode()
    else:
        value = np.asarray(item)
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        value = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[str])(value) \
            if value.size else value.astype(str)
    return value


def same(a, b) -> bool:
    """Two data items hold the same value (types of the same kind: str, number, bool)."""
    if isinstance(a, Stream) or isinstance(b, Stream):
        return isinstance(a, Stream) and isinstance(b, Stream) and a.stream == b.stream
    x, y = _plain(a), _plain(b)
    if x.shape != y.shape or (x.dtype.kind in "U") != (y.dtype.kind in "U"):
        return False
    if x.dtype.kind == "U":
        return bool((x == y).all())
    if x.dtype.fields or y.dtype.fields:
        return x.dtype == y.dtype and x.tobytes() == y.tobytes()
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc"))


def same_node(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, Dataset):
        return same(a.value, b.value) and _same_attrs(a, b)
    if isinstance(a, Group):
        return _same_attrs(a, b)
    return a == b


def _covers(before, node) -> bool:
    """``before`` (written, the map's and ours) holds ``node`` (the map's): its attributes
    and, for a dataset, its value; ours beside do not count."""
    if type(before) is not type(node):
        return False
    if isinstance(node, Dataset):
        if not same(before.value, node.value):
            return False
    elif not isinstance(node, Group):
        return before == node
    return all(k in before.attributes and same(before.attributes[k], v) for k, v in node.attributes.items())


def _same_attrs(a, b) -> bool:
    return a.attributes.keys() == b.attributes.keys() and all(same(v, b.attributes[k])
                                                              for k, v in a.attributes.items())


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _pop(root: Group, path: str):
    *parents, name = _split(path)
    node: object = root
    for part in parents:
        node = node.children.get(part) if isinstance(node, Group) else None
    if not isinstance(node, Group):
        return None
    return node.children.pop(name, None)


def _put(root: Group, path: str, item) -> None:
    *parents, name = _split(path)
    node = root
    for part in parents:
        child = node.children.get(part)
        if not isinstance(child, Group):
            child = node.children[part] = Group()
        node = child
    node.children[name] = item


def _retarget(node: Group, moves: dict[str, str]) -> None:
    for name, child in node.children.items():
        if isinstance(child, Group):
            _retarget(child, moves)
        elif isinstance(child, SoftLink) and child.target_path in moves:
            node.children[name] = SoftLink(target_path=moves[child.target_path])


__all__ = ["Merged", "file_map", "merge", "changed", "conflict_warning", "stream_items", "same", "same_node"]
