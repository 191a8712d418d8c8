"""The end of a scan in its file: the links of a sequence to its children's entries, and
the final tree (end time last: readers of BLISS files take it as "this entry is complete")."""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from .. import kinds
from ..descriptions import ScanDescription
from ..h5map import ExternalLink, Group
from ..io import entries
from ..io.files import FileHandle
from ..io.tree import TreeWriter, set_attributes
from ..mapping import layout
from ..mapping.layout import ScanPlan
from ..nxnodes import group, link
from ..metadata.config import BeamlineConfig
from ..records import NOTE, NOTE_GROUP
from ..transport.scans import ScanSource
from .blissmap import BlissMap

#: notified whenever a scan of this process has created its entries: a sequence waiting
#: for its children's entries wakes then (it still looks again every second, for entries
#: made by a handle it does not share)
ENTRIES_CREATED = threading.Condition()


def entries_created() -> None:
    with ENTRIES_CREATED:
        ENTRIES_CREATED.notify_all()


def subscan_links(source: ScanSource, plan: ScanPlan, handlers: dict[str, kinds.StreamKind],
                  handle: FileHandle, scan_file: str, child_wait: float, check_claim: Callable[[], None]):
    """The sequence's children, as links to their entries (external if in another file).

    A child in this file is linked once its entry exists, waiting for it at most
    ``child_wait`` in all (children still running are written by other threads)."""
    children: dict = {}
    deadline = time.monotonic() + child_wait
    refs = [ref for name in plan.subscan_streams for ref in handlers[name].child_scans()]
    for key, number in refs:
        path, number = source.child_path(key)
        entry = f"{number}.1"
        path = os.path.abspath(path) if path else scan_file
        if path == scan_file:
            with ENTRIES_CREATED:
                while not _has(handle, entry):
                    check_claim()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    ENTRIES_CREATED.wait(min(remaining, 1.0))
            children[entry] = link(f"/{entry}")
        else:
            rel = os.path.relpath(path, os.path.dirname(scan_file))
            target = rel if not rel.startswith("..") else path
            children[entry] = ExternalLink(target_file=target, target_path=f"/{entry}")
    return group("NXcollection", children)


def _has(handle: FileHandle, entry: str) -> bool:
    with handle.lock:
        return entries.has(handle.h5, entry)


def write_final_tree(handle: FileHandle, plan: ScanPlan, desc: ScanDescription, info: dict,
                     lengths: dict[str, int], status: str, warnings: list[str],
                     beamline: BeamlineConfig | None, outcomes: dict[str, kinds.Outcome],
                     needs_plugin: frozenset, subscans, live_paths: set[str], bliss_map: BlissMap) -> list[str]:
    """Every entry's final tree, BLISS's map of the file merged in (under the handle's lock,
    the caller flushes); the tree writer's warnings are returned."""
    h5 = handle.h5
    writer = TreeWriter()
    plotted = None
    #: entry -> its end_time node, written after everything else
    ends = {}
    trees: dict[str, Group] = {}
    for entry in plan.entries:
        built = trees[entry.name] = layout.final_tree(desc, entry, info, lengths, status, warnings,
                                                     beamline, outcomes, needs_plugin)
        if subscans is not None and subscans.children and entry is plan.entries[0]:
            built.children["subscans"] = subscans  # a sequence without children has none
    root, rewritten, mapped = bliss_map.final_root(trees, info)
    for entry in plan.entries:
        tree = root.children[entry.name]
        assert isinstance(tree, Group)  # (the merge never puts anything else in an entry's place)
        if mapped:  # with what the map made us say
            tree.children[NOTE_GROUP] = layout.writer_note(entry, lengths, status, warnings)
        if "end_time" in tree.children:
            ends[entry.name] = tree.children.pop("end_time")
        writer.write(h5, entry.name, tree,
                     replace=frozenset({f"{entry.name}/{NOTE_GROUP}/{NOTE.status}", *live_paths, *rewritten}))
        if plotted is None and _worth_plotting(tree):
            plotted = entry.name
    writer.finish_links()
    if root.attributes:  # BLISS's map's, for the file's root
        set_attributes(h5, root.attributes)
    for entry in plan.entries:  # groups made at the start for data that never came
        entries.prune_empty(h5, entry.name, layout.maybe_empty(entry))
    # the file opens on the last scan with something to show, never on an empty entry
    if plotted is not None:
        entries.set_default(h5, plotted)
    # end_time last: readers of BLISS files (ewoksdata, blissdata's h5api) take it
    # as "this entry is complete" and read it whole from then on
    for name, node in ends.items():
        writer.write(h5[name], "end_time", node)
    return list(writer.warnings)


def _worth_plotting(tree) -> bool:
    """The entry has a default plot (``layout.final_tree`` names one only over data)."""
    return "default" in tree.attributes
