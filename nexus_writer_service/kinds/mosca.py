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
from ..vds_mapping import VdsMapping
from . import register
from .base import Context, Outcome, StreamKind
from ..nxnodes import link
from .frames import Frames, frame_nodes, runs_vds


def spectra_runs(info: dict, count: int, files_found: dict | None = None) -> list[VdsMapping]:
    """The run of points (from its first) of each file holding points 0..count-1
    (``files_found``: file -> points it holds; only those are referenced when given).
    One mapping per file, not per point: a long scan's live view stays cheap."""
    mosca = info.get("mosca_info") or {}
    per_file = max(1, int(mosca.get("points_per_file") or 1))
    dataset = f"{mosca.get('data_path', '')}/spectra_{int(info.get('detector', 0)):02d}"
    runs = []
    for number, start in enumerate(range(0, max(0, count), per_file)):
        path = spectra_file(mosca, number)
        wanted = min(per_file, count - start)
        n = wanted if files_found is None else min(wanted, files_found.get(path, 0))
        if n:
            runs.append(VdsMapping.run(start, n, path, dataset, 0))
        if n < wanted:  # the points after a short file were never saved
            break
    return runs


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

    def _frames(self, runs: list) -> Frames:
        saved = sum(len(run) for run in runs)
        return Frames(max(self.read, saved), self.stream.dtype or "uint32",
                      tuple(int(d) for d in self.stream.shape), runs, "HDF5" if runs else "")

    def _vds(self, runs: list, n: int, file_dir: str, ch=None):
        vds = runs_vds(runs, n, self.stream.dtype or "uint32", tuple(int(d) for d in self.stream.shape),
                       file_dir, interpretation="spectrum")
        if ch is not None:  # units and long name, as every spectrum
            vds.attributes.update({k: v for k, v in ch.attributes.items() if k != "interpretation"})
        return vds

    def live(self, ctx: Context) -> dict | None:
        if not self.saving or self.saved == self._live_saved or not self.saved:
            return None
        self._live_saved = self.saved
        # while running: as long as what is saved
        return {f"instrument/{ctx.channel.group}/{ctx.channel.field}":
                self._vds(spectra_runs(self.stream.info, self.saved), self.saved, ctx.file_dir, ctx.channel)}

    def files_needed(self, known: dict) -> list[FileQuery]:
        # the last status can say fewer saved than the files hold (MOSCA counts a point
        # saved when its file closes, BLISS emits only on new points read): the files tell
        if not self.saving or not self.read:
            return []
        wanted = [FileQuery(path=run.src_file, dataset=run.src_dataset)
                  for run in spectra_runs(self.stream.info, max(self.read, self.saved))]
        return [q for q in wanted if q not in known]

    def finish(self, ctx: Context) -> Outcome:
        name, ch = self.stream.name, ctx.channel
        found = {facts.path: (facts.shape[0] if facts.exists and facts.shape else 0)
                 for answers in ctx.files.values() for facts in answers}
        runs = spectra_runs(self.stream.info, max(self.read, self.saved), found) if self.saving else []
        frames = self._frames(runs)
        warnings = []
        if frames.missing:
            why = "saving disabled" if not self.saving else "never saved by MOSCA"
            warnings.append(f"{name}: {frames.missing} of {frames.acquired} spectra {why} (fill value in the data)")
        # no URL per spectrum: 4 x 20,000 strings say what the virtual dataset says
        data = self._vds(runs, frames.acquired, ctx.file_dir, ch) if runs else None
        nodes, _ = frame_nodes(ctx.entry, ch, frames, ctx.file_dir, ctx.info, data=data, with_uris=False)
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
