"""Lima2 detectors: frames saved by the receivers, referenced from our entry.

What the stream gives (blissdata-lima2, protocol 2): ``info`` with dtype, shape and
``master_file = [path, dataset]`` (announced at prepare, before the file exists; the
dataset path has no leading slash), and events that are "frames processed" counts,
repeated at every reading tick. No frame is in Redis, and the plugin's stream class
needs the conductor: nothing of it is used here.

Which receiver holds which frame is decided by the conductor (round robin in any
``ordering`` of the receivers, or dynamically) and is not published: the master file
the conductor writes after the acquisition (a virtual dataset declared ``(n, 1, H, W)``
whose sources are bare file names beside it) says. At the end our entry gets a
virtual dataset over the receivers' files built from the master's mappings (relative
to our file when they sit below its folder), and an external link to the master.
Without a master file (the conductor died, saving stopped early) the receivers' files
``{prefix}_{rank}_{index:05d}.h5`` are referenced, each frame where the receiver's
``frame_idx`` (stored beside the frames under a dynamic dispatch) puts it; without
those, dealt round robin in rank order, an assumption: the scan is INCOMPLETE with
"frame order not known".
Sparse frames (``data/{index, intensity, frame_ptr}``) are linked from the master.
"""

from __future__ import annotations

import glob
import os
import re
import time

import numpy as np
from ..h5map import ExternalLink, SpaceSelection, VirtualDataset, VirtualSource

from ..descriptions import FileQuery, StreamDescription
from ..vds_mapping import VdsMapping
from ..fillvalues import fill_value
from ..nxnodes import attr_value, field
from . import register
from .base import Context, Outcome, StreamKind
from ..scangrid import mesh_shape
from .frames import Frames, frame_nodes, relative


def progressions(frames, indices) -> list[tuple[int, int, int, int]]:
    """(first frame, frame stride, first index in file, count): the (frame, index in file)
    pairs, sorted by index in file, cut into arithmetic runs. Frames dealt round robin
    over R receivers are one run per file (stride R), not one source per frame."""
    f = np.asarray(frames, dtype=np.int64)
    s = np.asarray(indices, dtype=np.int64)
    df = np.diff(f)
    linked = (np.diff(s) == 1) & (df > 0)  # link k: pair k+1 can follow pair k in a run
    runs: list[tuple[int, int, int, int]] = []
    i, n = 0, len(f)
    while i < n:
        stride, count = 1, 1
        if i + 1 < n and linked[i]:
            stride = int(df[i])
            same = linked[i:] & (df[i:] == stride)
            count = 1 + (int(np.argmin(same)) if not same.all() else len(same))
        runs.append((int(f[i]), stride, int(s[i]), count))
        i += count
    return runs


def master_vds(sources: list[VdsMapping], folder: str, file_dir: str, n: int, frame_shape: tuple, dtype: str,
               fill) -> VirtualDataset:
    """Our ``(n, *frame)`` virtual dataset over the receivers' files the master maps."""
    dims = [int(d) for d in frame_shape]
    zeros = [0] * len(dims)
    vsources = []
    for m in sources:
        # a receiver's dataset may carry the (n, 1, H, W) channel axis: select it whole
        extra = [int(d) for d in m.src_shape[1:len(m.src_shape) - len(dims)]]
        src = relative(os.path.join(folder, m.src_file), file_dir)
        src_dataset, vidx, sidx = m.src_dataset, m.frames, m.src_frames
        order = np.argsort(sidx, kind="stable")
        for f0, stride, s0, count in progressions(vidx[order], sidx[order]):
            vsources.append(VirtualSource(
                vspace=SpaceSelection(start=[f0, *zeros], stride=[stride, *[1] * len(dims)],
                                      count=[count, *dims]) if stride > 1 else
                SpaceSelection(start=[f0, *zeros], count=[count, *dims]),
                src_file=src, src_dataset=src_dataset,
                src_space=SpaceSelection(start=[s0, *[0] * len(extra), *zeros], count=[count, *extra, *dims])))
    return VirtualDataset(dtype=np.dtype(dtype).str, shape=[n, *dims], virtual_sources=vsources,
                          attributes={"interpretation": "image", "fill_value": attr_value(fill)})


def master_parts(master_path: str) -> tuple[str, str] | None:
    """(folder, file prefix) of ``{folder}/{prefix}_master.h5``."""
    folder, name = os.path.split(master_path)
    m = re.fullmatch(r"(.+)_master\.h5", name)
    return (folder, m.group(1)) if m else None


_RECEIVER = re.compile(r".*_(\d+)_(\d+)\.h5$")


@register
class Lima2(StreamKind):
    name = "lima2"
    priority = 20
    cumulative = True  # each status says all: the newest one is enough
    live_group = True
    role = "frames"

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.plugin == "lima2"

    def __init__(self, stream: StreamDescription):
        super().__init__(stream)
        self.acquired = 0
        #: receiver file -> facts: seen while running, and those that will not grow any more
        self._seen: dict = {}
        self._complete: dict = {}
        #: receiver file -> the global index of each frame in it, where it stores them
        self._indices: dict = {}
        self._live_at = -float("inf")
        self._live_frames = 0
        master = stream.info.get("master_file")
        if isinstance(master, (list, tuple)) and len(master) == 2 and master[0]:
            self.master = (str(master[0]), "/" + str(master[1]).lstrip("/"))
        else:
            self.master = None

    def on_events(self, events, lost: int = 0) -> None:
        # counts of frames processed, repeated at each tick: the largest is the truth
        for count in events:
            try:
                self.acquired = max(self.acquired, int(count))
            except (TypeError, ValueError):
                continue

    def progress(self) -> int:
        return self.acquired

    def _queries(self) -> dict[str, FileQuery]:
        if self.master is None:
            return {}
        path, dataset = self.master
        q = {"master": FileQuery(path=path, dataset=dataset),
             "frame_ptr": FileQuery(path=path, dataset=f"{dataset}/frame_ptr")}
        parts = master_parts(path)
        if parts:
            folder, prefix = parts
            pattern = os.path.join(glob.escape(folder), f"{glob.escape(prefix)}_*_*.h5")
            q["receivers"] = FileQuery(pattern=pattern, dataset=dataset)
            q["frame_idx"] = FileQuery(pattern=pattern, dataset=_frame_idx(dataset), what="values")
        return q

    def files_needed(self, known: dict) -> list[FileQuery]:
        """The master first; the receivers' files only when there is no master to read."""
        q = self._queries()
        if not q:
            return []
        if q["master"] not in known:
            return [q["master"], q["frame_ptr"]]
        master = (known[q["master"]] or [None])[0]
        if "receivers" in q and q["receivers"] not in known and not (master and master.exists):
            return [q["receivers"], q["frame_idx"]]
        return []

    # -- while the scan runs: the receivers' files as they fill ----------------
    #: seconds between two live views (each reads the new receiver files' shapes)
    LIVE_PERIOD = 2.0

    def live_files_needed(self, known: dict) -> list[FileQuery]:
        """The receivers' files (listed, not opened), then the shape of those not known
        complete: a file is complete once its receiver has started the next one."""
        q = self._queries().get("receivers")
        if q is None or time.monotonic() - self._live_at < self.LIVE_PERIOD:
            return []
        listing = FileQuery(pattern=q.pattern, dataset=q.dataset, what="list")
        if listing not in known:
            return [listing]
        files = [f.path for f in known[listing] if f.exists and _RECEIVER.match(f.path)]
        last = {}
        for path in files:
            rank, index = (int(g) for g in _RECEIVER.match(path).groups())
            last[rank] = max(last.get(rank, -1), index)
        wanted = []
        for path in files:
            rank, index = (int(g) for g in _RECEIVER.match(path).groups())
            if path not in self._complete or index == last[rank]:
                wanted.append(FileQuery(path=path, dataset=q.dataset))
                wanted.append(FileQuery(path=path, dataset=_frame_idx(q.dataset), what="values"))
            if index < last[rank] and path in self._seen:
                self._complete[path] = self._seen[path]
        return wanted

    def live(self, ctx: Context) -> dict | None:
        """Frames saved so far, placed by the receivers' frame indices where they store
        them, else dealt round robin (the master's mapping replaces this view at the end)."""
        if not ctx.files:
            return None
        self._live_at = time.monotonic()
        for q, answers in ctx.files.items():
            for facts in answers:
                if q.what == "values":
                    self._indices[facts.path] = facts.values if facts.exists else None
                elif facts.exists and facts.shape:
                    self._seen[facts.path] = facts
        sources, frame_shape, dtype, saved, _ = _receiver_mappings(list(self._seen.values()), self._indices)
        if not saved or saved == self._live_frames:
            return None
        self._live_frames = saved
        return {f"instrument/{ctx.channel.group}/{ctx.channel.field}":
                master_vds(sources, "", ctx.file_dir, saved, frame_shape, dtype or "uint16",
                           fill_value(dtype or "uint16"))}

    def expected(self, info: dict) -> int:
        """Frames the acquisition was to take: what BLISS sent the detector
        (``acq_params.acq.nb_frames`` in the device's metadata), else what was processed."""
        dev = ((info.get("channels") or {}).get(self.stream.name) or {}).get("device")
        meta = ((info.get("devices") or {}).get(dev) or {}).get("metadata") or {}
        try:
            wanted = int(((meta.get("acq_params") or {}).get("acq") or {}).get("nb_frames") or 0)
        except (TypeError, ValueError, AttributeError):
            wanted = 0
        return max(self.acquired, wanted)

    def finish(self, ctx: Context) -> Outcome:
        self.acquired = self.expected(ctx.info)
        name = self.stream.name
        if self.master is None:
            return Outcome(missing=self.acquired, warnings=[
                f"{name}: the detector saves no files (no master file announced): "
                f"{self.acquired} frames not in the file"] if self.acquired else [])
        queries = self._queries()
        got = {k: (ctx.files.get(q) or [None])[0] for k, q in queries.items() if k != "receivers"}
        master = got.get("master")
        warnings: list[str] = []
        extra = {"frames_processed": field(self.acquired)}
        master_dir = os.path.dirname(self.master[0])
        if master is not None and master.exists:
            # the master's own frames (not its entry: validators loop on the entry's hard links)
            extra["master_data"] = ExternalLink(target_file=relative(self.master[0], ctx.file_dir),
                                                target_path=self.master[1])
        if master is not None and master.exists and master.members:  # sparse frames: a group
            ptr = got.get("frame_ptr")
            saved = max(0, (ptr.shape[0] - 1)) if ptr is not None and ptr.exists and ptr.shape else 0
            extra["sparse"] = ExternalLink(target_file=relative(self.master[0], ctx.file_dir),
                                           target_path=self.master[1])
            frames = Frames(max(self.acquired, saved), self.stream.dtype or "float32", (), [])
            nodes, plot = frame_nodes(ctx.entry, ctx.channel, frames, ctx.file_dir, ctx.info, extra,
                                      with_uris=False)
            missing = max(0, self.acquired - saved)
            if missing:
                warnings.append(f"{name}: {missing} of {self.acquired} sparse frames not in the master file")
            return Outcome(nodes=nodes, written=saved, missing=missing, warnings=warnings)
        order_known = True
        if master is not None and master.exists and master.sources:
            shape = master.shape
            frame_shape = tuple(shape[2:]) if len(shape) == 4 and shape[1] == 1 else tuple(shape[1:])
            dtype = master.dtype or self.stream.dtype or "uint16"
            folder = master_dir
            sources = master.sources
            saved = sum(len(m) for m in sources)
        else:
            receivers = ctx.files.get(queries["receivers"], []) if "receivers" in queries else []
            indices = {f.path: (f.values if f.exists else None)
                       for f in (ctx.files.get(queries["frame_idx"], []) if "frame_idx" in queries else [])}
            sources, frame_shape, dtype, saved, order_known = _receiver_mappings(receivers, indices, self.acquired)
            folder = ""  # the receivers' paths as found
            if saved and order_known:
                warnings.append(f"{name}: no master file at {self.master[0]}: frames referenced from "
                                f"{len(sources)} receiver files, placed by their frame_idx")
            elif saved:
                warnings.append(f"{name}: no master file at {self.master[0]} and the receivers store no "
                                f"frame_idx: frame order not known (frames from {len(sources)} receiver "
                                f"files placed as if dealt round robin)")
        data, mappings, prefix = None, [], ()
        if saved:
            dtype = dtype or "uint16"
            first = sources[0]
            prefix = tuple(first.src_shape[1:len(first.src_shape) - len(frame_shape)])
            mappings = [VdsMapping(m.frames, os.path.join(folder, m.src_file), m.src_dataset, m.src_frames,
                                   m.src_shape, m.frame_shape) for m in sources]
            if not mesh_shape(ctx.info):  # a mesh needs its (slow, fast) layout: frame_nodes makes it
                # one strided source per receiver file
                data = master_vds(sources, folder, ctx.file_dir, max(self.acquired, saved),
                                  frame_shape, dtype, fill_value(dtype))
        frames = Frames(max(self.acquired, saved), dtype or "uint16", frame_shape, mappings, "HDF5" if mappings else "",
                        src_prefix=prefix)
        nodes, plot = frame_nodes(ctx.entry, ctx.channel, frames, ctx.file_dir, ctx.info, extra, data=data,
                                  with_uris=False)  # the VDS and the master link say it all
        if frames.missing:
            warnings.append(f"{name}: {frames.missing} of {frames.acquired} frames were never saved "
                            f"by the detector (fill value in the data)")
        # frames placed by an assumption are not the scan's data for sure: never SUCCEEDED
        return Outcome(nodes=nodes, written=frames.saved, missing=frames.missing, warnings=warnings, plot=plot,
                       accounted=order_known)



def _frame_idx(data_path: str) -> str:
    """Where a receiver stores the global index of each of its frames (dynamic
    dispatch): ``frame_idx`` beside the frames' ``data``."""
    return f"{data_path.rsplit('/', 1)[0]}/frame_idx" if "/" in data_path else "frame_idx"


def _receiver_mappings(receivers: list, indices: dict, acquired: int = 0
                       ) -> tuple[list[VdsMapping], tuple, str | None, int, bool]:
    """Mappings over the receivers' files without a master: (mappings, frame shape,
    dtype, frames, whether the order is known). Every file with frames stores its
    ``frame_idx`` (distinct, one per frame): each frame goes where it says. Otherwise the
    frames are dealt round robin over the ranks, in rank order (the i-th frame of every
    rank before the (i+1)-th of any; a rank that saved fewer drops out of the rotation):
    lima2's default, but only an assumption (any ``ordering`` or a dynamic dispatch
    deals otherwise). ``acquired``: frames taken (an index up to there is believed)."""
    by_rank: dict[int, list] = {}
    frame_shape, dtype, prefix = (), None, ()
    for facts in receivers:
        m = _RECEIVER.match(facts.path)
        if not (facts.exists and facts.shape and facts.shape[0] and m):  # (an empty file holds no frame)
            continue
        by_rank.setdefault(int(m.group(1)), []).append((int(m.group(2)), facts))
        shape = facts.shape
        frame_shape = tuple(shape[2:]) if len(shape) == 4 and shape[1] == 1 else tuple(shape[1:])
        prefix = (1,) if len(shape) == 4 and shape[1] == 1 else ()
        dtype = facts.dtype
    ranks = [sorted(by_rank[r], key=lambda t: t[0]) for r in sorted(by_rank)]
    files = [facts for rank in ranks for _, facts in rank]
    total = sum(f.shape[0] for f in files)
    if not total:
        return [], frame_shape, dtype, 0, True
    placed = _by_frame_idx(files, indices, max(total, acquired), prefix, frame_shape)
    if placed is not None:
        return placed, frame_shape, dtype, total, True
    lengths = np.array([sum(f.shape[0] for _, f in rank) for rank in ranks], dtype=np.int64)
    turn = np.arange(lengths.max())
    active = lengths[:, None] > turn[None, :]  # rank r still deals at turn i
    before = np.concatenate([[0], np.cumsum(active.sum(0))[:-1]])  # frames dealt before turn i
    sources = []
    for r, rank in enumerate(ranks):
        frames = before[:lengths[r]] + active[:r, :lengths[r]].sum(0)
        offset = 0
        for _, facts in rank:
            n = facts.shape[0]
            sources.append(VdsMapping(frames[offset:offset + n], facts.path, facts.dataset, np.arange(n),
                                      (n, *prefix, *frame_shape), frame_shape))
            offset += n
    return sources, frame_shape, dtype, total, False


def _by_frame_idx(files: list, indices: dict, total: int, prefix: tuple, frame_shape: tuple
                  ) -> list[VdsMapping] | None:
    """Each file's frames where its ``frame_idx`` puts them; None unless every file says,
    for each of its frames, a distinct index below ``total``."""
    out = []
    for facts in files:
        n = facts.shape[0]
        idx = indices.get(facts.path)
        if idx is None or np.ndim(idx) != 1 or len(idx) < n or not np.issubdtype(np.asarray(idx).dtype, np.integer):
            return None
        idx = np.asarray(idx[:n], dtype=np.int64)
        out.append(VdsMapping(idx, facts.path, facts.dataset, np.arange(n), (n, *prefix, *frame_shape), frame_shape))
    every = np.concatenate([m.frames for m in out])
    if len(np.unique(every)) != len(every) or every.min() < 0 or every.max() >= total:
        return None
    return out
