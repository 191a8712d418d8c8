"""MOSCA multichannel analysers: spectra saved by the MOSCA server in its own files.

One stream per detector element (``{ctrl}:spectrum:spec_det{NN}``), with JSON events
``{last_read_index, last_saved_index}``: points read from the hardware and points
saved (the last event can leave saved < read). No spectrum is in Redis. The spectra
of detector NN are ``{file_path}/{file_prefix}spectra_{FFFF}.h5`` at
``{data_path}/spectra_{NN:02d}``, ``points_per_file`` points per file, file FFFF
holding points FFFF*points_per_file onwards. They become one virtual dataset
(points x channels) in the detector's group, rewritten while points are saved so
that readers see them grow; statistics and ROIs are ordinary numeric channels
written beside it.
"""

from __future__ import annotations

import os

from ..descriptions import FileQuery, StreamDescription
from . import register
from .base import Context, Outcome, StreamKind
from ..mapping.nexus import link
from .frames import Frames, frame_nodes, frames_vds


def spectra_references(info: dict, count: int, files_found: dict | None = None) -> list[tuple[str, str, str, int]]:
    """(format, file, dataset, index in file) of points 0..count-1 (``files_found``:
    file -> points it holds; only those are referenced when given)."""
    mosca = info.get("mosca_info") or {}
    per_file = max(1, int(mosca.get("points_per_file") or 1))
    dataset = f"{mosca.get('data_path', '')}/spectra_{int(info.get('detector', 0)):02d}"
    refs: list[tuple[str, str, str, int]] = []
    for number, start in enumerate(range(0, max(0, count), per_file)):  # a file at a time (20k points: 4 ms)
        path = spectra_file(mosca, number)
        n = min(per_file, count - start)
        if files_found is not None:
            n = min(n, files_found.get(path, 0))
        refs.extend(("HDF5", path, dataset, index) for index in range(n))
        if n < min(per_file, count - start):
            break
    return refs


def spectra_file(mosca: dict, number: int) -> str:
    return os.path.join(str(mosca.get("file_path", "")), f"{mosca.get('file_prefix', '')}spectra_{number:04d}.h5")


@register
class Mosca(StreamKind):
    name = "mosca"
    priority = 20
    cumulative = True  # each status says all: the newest one is enough
    live_group = True
    role = "spectrum_files"

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.plugin == "mosca"

    def __init__(self, stream: StreamDescription):
        super().__init__(stream)
        self.read = 0
        self.saved = 0
        self._live_saved = -1

    @property
    def mosca(self) -> dict:
        return self.stream.info.get("mosca_info") or {}

    @property
    def saving(self) -> bool:
        return bool(self.mosca.get("saving_enabled", True)) and bool(self.mosca.get("file_path"))

    def on_events(self, events, lost: int = 0) -> None:
        for event in events:
            if isinstance(event, dict):
                self.read = max(self.read, int(event.get("last_read_index", -1)) + 1)
                self.saved = max(self.saved, int(event.get("last_saved_index", -1)) + 1)

    def progress(self) -> int:
        return self.saved

    def _frames(self, refs) -> Frames:
        shape = tuple(int(d) for d in self.stream.shape)
        return Frames(max(self.read, len(refs)), self.stream.dtype or "uint32", shape, refs)

    def live(self, ctx: Context) -> dict | None:
        if not self.saving or self.saved == self._live_saved or not self.saved:
            return None
        self._live_saved = self.saved
        frames = self._frames(spectra_references(self.stream.info, self.saved))
        frames.acquired = frames.saved  # while running: as long as what is saved
        return {f"instrument/{ctx.channel.group}/{ctx.channel.field}":
                frames_vds(frames, ctx.file_dir, interpretation="spectrum")}

    def files_needed(self, known: dict) -> list[FileQuery]:
        # the last status can say fewer saved than the files hold (MOSCA counts a point
        # saved when its file closes, BLISS emits only on new points read): the files tell
        if not self.saving or not self.read:
            return []
        refs = spectra_references(self.stream.info, max(self.read, self.saved))
        wanted = [FileQuery(path=p, dataset=refs[0][2]) for p in dict.fromkeys(r[1] for r in refs)]
        return [q for q in wanted if q not in known]

    def finish(self, ctx: Context) -> Outcome:
        name, ch = self.stream.name, ctx.channel
        found = {facts.path: (facts.shape[0] if facts.exists and facts.shape else 0)
                 for answers in ctx.files.values() for facts in answers}
        refs = spectra_references(self.stream.info, max(self.read, self.saved), found) if self.saving else []
        frames = self._frames(refs)
        warnings = []
        if frames.missing:
            why = "saving disabled" if not self.saving else "never saved by MOSCA"
            warnings.append(f"{name}: {frames.missing} of {frames.acquired} spectra {why} (fill value in the data)")
        # no URL per spectrum: 4 x 20,000 strings say what the virtual dataset says
        nodes, _ = frame_nodes(ctx.entry, ch, frames, ctx.file_dir, ctx.info, with_uris=False)
        det = nodes[f"instrument/{ch.group}"]
        # spectra, not images: in the MCA's group beside its statistics, no image plot
        children = det.children
        data = children.pop("data", None)
        children["spectra_read"] = children.pop("frames_acquired")
        children["spectra_saved"] = children.pop("frames_saved")
        children.pop("file_format", None)
        if data is not None:
            data.attributes["interpretation"] = "spectrum"
            children[ch.field] = data
            nodes[f"measurement/{ch.short_name}"] = link(f"/{ctx.entry}/instrument/{ch.group}/{ch.field}")
        else:
            nodes.pop(f"measurement/{ch.short_name}", None)
        out = nodes
        return Outcome(nodes=out, written=frames.saved, missing=frames.missing, warnings=warnings)
