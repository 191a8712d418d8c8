"""BLISS's map of our file (``scan_info["h5maps"]``, BLISS 2.4) over one scan's trees.

BLISS sends the map at PREPARING and again at the end; the merge itself is pure
(``mapping.h5maps``). What a scan must remember between the two is here: the map and the
tree of the start (what the end's map changed is written again), and the conflicts already
said (one warning per scan, the end's joining the start's).
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from ..h5map import Group
from ..mapping import h5maps
from ..mapping.layout import ScanPlan


class BlissMap:
    def __init__(self, path: str, plan: ScanPlan, info: dict, said: list[str],
                 warn: Callable[[str], None], log: logging.LoggerAdapter):
        #: the file the maps are looked up for (where the scan's entries are)
        self.path = path
        self._plan = plan
        #: the scan's warnings so far (a problem is said once)
        self._said = said
        self._warn = warn
        self._log = log
        self._conflicts: list[str] = []
        self._start_tree: Group | None = None
        self.start_map = self.file_map(info)

    def file_map(self, info: dict) -> Group | None:
        """BLISS's map of our file in ``info``, or None; its problems are warnings."""
        the_map, problems, notes = h5maps.file_map(info, self.path)
        for note in notes:
            self._log.debug(note)
        for problem in problems:
            if problem not in self._said:
                self._warn(problem)
        return the_map

    def start_root(self, trees: dict[str, Group]) -> Group:
        """The file's root at the start: our entries' ``trees`` with the start map merged in."""
        root = self._with_map(trees, self.start_map, final=False)
        self._start_tree = root
        return root

    def final_root(self, trees: dict[str, Group], info: dict) -> tuple[Group, frozenset[str], bool]:
        """The file's root at the end, the paths the end's map changed since the start (to be
        written over what is), and whether a map was merged at all. The end's map is the
        start's when the end has none (or a broken one)."""
        end_map = (self.file_map(info) if "h5maps" in info else None) or self.start_map
        root = self._with_map(trees, end_map, final=True)
        rewritten = h5maps.changed(self._start_tree, end_map) if end_map and self._start_tree else set()
        return root, frozenset(rewritten), end_map is not None

    def _with_map(self, trees: dict[str, Group], the_map: Group | None, final: bool) -> Group:
        root = Group()
        root.children.update(trees)
        if the_map is None:
            return root
        plan = self._plan
        streams = {c.stream: f"/{c.entry}/{c.path}" for c in plan.channels}
        folder = os.path.dirname(self.path)
        merged = h5maps.merge(root, the_map, streams, {c.stream for c in plan.streamed},
                              lambda name: os.path.exists(os.path.join(folder, name)), final)
        for warning in merged.warnings:
            if warning not in self._said:
                self._warn(warning)
        new = [c for c in merged.conflicts if c not in self._conflicts]
        if new:  # one warning per scan: the end's conflicts join the start's
            said = h5maps.conflict_warning(self._conflicts) if self._conflicts else None
            self._conflicts += new
            if said in self._said:
                self._said.remove(said)
            self._warn(h5maps.conflict_warning(self._conflicts))
        return merged.tree
