"""Lima (v1) detectors: frames saved by the detector server, referenced from our entry.

The stream carries JSON statuses ``{"last_index", "last_index_saved"}``; the last one
says how many frames were acquired and saved. Where frame ``i`` is follows from the
saving description in ``info["lima_info"]`` (the same arithmetic as blissdata's
``LimaClient``, done here so that no lima server is needed): acquisitions of
``frame_per_acquisition`` frames, files of ``frame_per_file`` frames numbered from
``file_offset`` into the printf template ``file_path``.
"""

from __future__ import annotations

import math

import numpy as np

from ..descriptions import FileQuery, StreamDescription
from . import register
from .base import Context, Outcome, StreamKind
from .frames import FrameRef, Frames, frame_nodes, is_hdf5, mappings_of


def frame_references(lima_info: dict, count: int) -> list[FrameRef]:
    """Where frames 0..count-1 are."""
    if count <= 0 or not lima_info.get("file_path"):
        return []
    per_file = max(1, int(lima_info.get("frame_per_file") or 1))
    per_acq = int(lima_info.get("frame_per_acquisition") or 0)
    files_per_acq = math.ceil(per_acq / per_file) if per_acq > 0 else 0
    offset = int(lima_info.get("file_offset") or 0)
    template, data_path = str(lima_info["file_path"]), str(lima_info.get("data_path") or "")
    fmt = str(lima_info.get("file_format") or "")
    refs = []
    for frame in range(count):
        acq, in_acq = divmod(frame, per_acq) if per_acq > 0 else (0, frame)
        file_in_acq, in_file = divmod(in_acq, per_file)
        number = acq * files_per_acq + file_in_acq + offset
        refs.append(FrameRef(fmt, template % number, data_path, in_file))
    return refs


@register
class Lima(StreamKind):
    name = "lima"
    priority = 20
    cumulative = True  # each status says all: the newest one is enough
    role = "frames"

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.encoding == "json" and stream.plugin == "lima"

    def __init__(self, stream: StreamDescription):
        super().__init__(stream)
        self.acquired = 0
        self.saved = 0
        self._refs_for: tuple[int, list] = (-1, [])

    @property
    def lima_info(self) -> dict:
        return self.stream.info.get("lima_info") or {}

    def on_events(self, events, lost: int = 0) -> None:
        # statuses are cumulative: the last one says it all (trimmed earlier ones do not matter)
        for status in events:
            if isinstance(status, dict):
                self.acquired = max(self.acquired, int(status.get("last_index", -1)) + 1)
                self.saved = max(self.saved, int(status.get("last_index_saved", -1)) + 1)

    def progress(self) -> int:
        return self.saved

    def _refs(self):
        # asked again at each files_needed round and at the end: made once per count
        if self._refs_for[0] != self.saved:
            self._refs_for = (self.saved, frame_references(self.lima_info, self.saved))
        return self._refs_for[1]

    def files_needed(self, known: dict) -> list[FileQuery]:
        refs = self._refs()
        if not refs or is_hdf5(refs[0].file_format):
            return []
        wanted = [FileQuery(path=p, what="edf") for p in dict.fromkeys(r.path for r in refs)]
        return [q for q in wanted if q not in known]

    def finish(self, ctx: Context) -> Outcome:
        refs = self._refs()
        shape = tuple(int(d) for d in self.stream.shape)
        frames = Frames(max(self.acquired, self.saved), self.stream.dtype or "uint16", shape, mappings_of(refs),
                        refs[0].file_format if refs else "")
        if refs and not is_hdf5(refs[0].file_format):
            frames.raw = self._raw(refs, ctx.files, frames.dtype)
        nodes, plot = frame_nodes(ctx.entry, ctx.channel, frames, ctx.file_dir, ctx.info)
        out = Outcome(nodes=nodes, written=frames.saved, missing=frames.missing, plot=plot)
        if frames.missing:
            out.warnings.append(f"{self.stream.name}: {frames.missing} of {frames.acquired} frames were "
                                f"never saved by the detector (fill value in the data)")
        return out

    @staticmethod
    def _raw(refs: list[FrameRef], files: dict, dtype: str) -> list | None:
        """(file, offset, size) per frame when every frame is raw pixels of ``dtype``."""
        layouts = {facts.path: facts.raw for answers in files.values() for facts in answers}
        want = np.dtype(dtype).newbyteorder("<")
        out = []
        for ref in refs:
            layout = layouts.get(ref.path)
            if (str(ref.file_format).upper() != "EDF" or not layout or ref.index >= len(layout)
                    or layout[ref.index] is None):
                return None
            offset, size, kind = layout[ref.index]
            if np.dtype(kind) != want:
                return None
            out.append((ref.path, offset, size))
        return out
