"""A scan's data while it runs: the read loop and the appender.

The loop reads every followed stream through one cursor group (``ScanSource.read``)
until each is sealed and read, the scan stalls, is stopped, or the disk never gives
room. It holds a working slot (``scheduler``) only for file work: appends, live views,
flushes; a scan waiting for Redis holds none. Redis disconnections are retried (the
cursor positions survive). The appender puts each batch in its dataset, skipping what a
previous run of the writer already wrote (resumed entries) and growing over points
trimmed from Redis before they were read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import kinds
from ..descriptions import ScanDescription
from ..io.space import MB
from ..io.tree import TreeWriter
from ..mapping.layout import ScanPlan
from ..transport.blissdata_api import EndOfStream
from ..transport.scans import REDIS_DOWN, ScanSource
from . import kindcalls
from .config import WriterConfig
from .scanfile import ScanFile
from .scheduler import Slot


class GaveUp(Exception):
    """The storage never gave room for what the scan holds: it ends, its data in Redis."""


class Appender:
    """Puts read batches into the scan's datasets (or hands events to their kinds)."""

    def __init__(self, file: ScanFile, handlers: dict[str, kinds.StreamKind], warn: Callable[[str], None]):
        self.file = file
        self.handlers = handlers
        self._warn = warn
        arrays = file.arrays
        #: points already in the file (resumed entries) are not appended twice
        self._skip = {name: a.length for name, a in arrays.items() if a.length}
        #: points trimmed from Redis before they were read; a previous run's stay lost (the
        #: file says how many)
        self.lost: dict[str, int] = {name: a.missing for name, a in arrays.items() if a.missing}
        #: streams whose data could not be read as described: why
        self.broken: dict[str, str] = {}

    @property
    def resumed_points(self) -> int:
        return max(self._skip.values(), default=0)

    def append(self, batches: dict, piecewise: bool = False) -> None:
        arrays = self.file.arrays
        with self.file.handle.lock:
            for name, batch in batches.items():
                if batch.error:
                    self.broken[name] = batch.error
                    self._warn(f"{name}: {batch.error}: not written from point {self.point(name)} on")
                    continue
                kind = self.handlers.get(name)
                if kind is not None and not kind.appends:
                    kind.on_events(batch.data if batch.data is not None else [], batch.lost)
                    continue
                array = arrays[name]
                batch = self._skip_written(name, batch)
                if batch.lost:
                    self.lost[name] = self.lost.get(name, 0) + batch.lost
                    array.grow(batch.lost)  # later points stay at their index
                if batch.data is not None and len(batch.data):
                    if piecewise:
                        self._append_in_pieces(array, batch.data)
                    else:
                        array.append(batch.data)

    def _append_in_pieces(self, array, data) -> None:
        """A chunk's worth of points at a time, each once there is room for it."""
        first = np.asarray(data[0])
        rows = max(1, array.chunk_bytes // max(1, first.nbytes))
        for start in range(0, len(data), rows):
            piece = data[start:start + rows]
            nbytes = sum(np.asarray(p).nbytes for p in piece) if isinstance(piece, list) else piece.nbytes
            if not self.file.make_room((nbytes + array.chunk_bytes) / MB):
                raise GaveUp()
            array.append(piece)

    def _skip_written(self, name: str, batch):
        """Drop the points a previous run already wrote (resumed entries)."""
        skip = self._skip.get(name, 0)
        if not skip:
            return batch
        from_lost = min(skip, batch.lost)
        data = batch.data if batch.data is not None else []
        from_data = min(skip - from_lost, len(data))
        self._skip[name] = skip - from_lost - from_data
        return type(batch)(data[from_data:], batch.lost - from_lost)

    def point(self, name: str) -> int:
        array = self.file.arrays.get(name)
        return array.length if array is not None else 0

    def lengths(self) -> dict[str, int]:
        """Points in each growing dataset."""
        return {n: a.length for n, a in self.file.arrays.items()}

    def written(self) -> dict[str, int]:
        """Points (frames, events) in the file so far, per stream."""
        written = self.lengths()
        for name, kind in self.handlers.items():
            progress = kind.progress() if not kind.appends else None
            if progress is not None:
                written[name] = progress
        return written


@dataclass(frozen=True)
class StreamEnd:
    """How the read loop ended."""

    #: read until the end (every stream sealed and read, or the closed scan went quiet);
    #: False if given up (stalled, stopped, no room)
    complete: bool
    #: every stream sealed and read to its end (what Redis published is what was read)
    drained: bool = False
    #: stopped on request: finish with what was written, wait for nothing more
    stopped: bool = False


@dataclass
class Controls:
    """What the loop asks of the scan writer between reads."""

    #: raises when the session was taken over (nothing more is read or written then)
    check_claim: Callable[[], None]
    #: asks Redis now whether the session is still ours (after an outage)
    confirm_claim: Callable[[], object]
    #: whether someone asked for this scan to stop (Tango stop_scan), by scan key
    stop_requested: Callable[[str], bool]
    #: publishes progress when due
    progress: Callable[[], None]
    warn: Callable[[str], None]


class ReadLoop:
    """Append data until every stream is sealed and read (``run``)."""

    def __init__(self, source: ScanSource, file: ScanFile, appender: Appender, plan: ScanPlan,
                 desc: ScanDescription, config: WriterConfig, slot: Slot, log: logging.LoggerAdapter,
                 controls: Controls, scan_file: str):
        self.source = source
        #: the path the scan writes (detector files are referenced relative to it)
        self.scan_file = scan_file
        self.file = file
        self.appender = appender
        self.plan = plan
        self.desc = desc
        self.config = config
        self.slot = slot
        self.log = log
        self.controls = controls
        self._last_live = 0.0

    def run(self) -> StreamEnd:
        src, config, file, ctl = self.source, self.config, self.file, self.controls
        handlers = self.appender.handlers
        events = [n for n, k in handlers.items() if k.follows and not k.appends]
        src.follow(list(file.arrays) + events, {n for n in events if handlers[n].cumulative})
        # a slow scan (long count time) is not a stalled one
        count_time = self.desc.info.get("count_time")
        stall = max(config.stall_timeout,
                    10 * count_time if isinstance(count_time, (int, float)) else 0)
        last_progress = time.monotonic()
        redis_down = False
        has_live = bool(self.plan.referenced)  # views that grow while the scan runs
        next_stop_check = 0.0
        while True:
            ctl.check_claim()
            if not file.room_to_go_on():
                return StreamEnd(complete=False)
            if time.monotonic() >= next_stop_check:  # one Redis call a second at most
                next_stop_check = time.monotonic() + 1.0
                if ctl.stop_requested(src.key):
                    self.slot.take()
                    ctl.warn("stopped on request (stop_scan): the rest of the scan is not written")
                    return StreamEnd(complete=False, stopped=True)
            try:
                batches = src.read(timeout=config.read_timeout)
                if redis_down:
                    self.log.warning("Redis is back: reading again")
                    redis_down = False
                    # ours expired if the outage outlasted it: ask before appending anything
                    ctl.confirm_claim()
                ctl.check_claim()  # points read after a takeover are the new writer's
            except EndOfStream:
                self.slot.take()
                return StreamEnd(complete=True, drained=True)
            except REDIS_DOWN as e:
                if not redis_down:
                    self.log.warning("Redis unreachable (%s): retrying", e)
                    redis_down = True
                batches = {}
                time.sleep(min(1.0, config.read_timeout))
            live_due = has_live and time.monotonic() - self._last_live > config.flush_period
            if batches or live_due or file.dirty:
                # file work, even for a scan that got nothing new: live views read detector
                # files and rewrite items, a flush writes every dirty object of the file. A
                # scan that wrote nothing since its last flush has nothing to flush (the
                # file's other scans flush their own points): a hung one takes no slot
                self.slot.take()
            if batches:
                last_progress = time.monotonic()
                try:  # a batch the disk has no room for now is written a chunk at a time
                    self.appender.append(batches, piecewise=not file.room_for(batches))
                except GaveUp:
                    return StreamEnd(complete=False)
                file.dirty = True
            ctl.check_claim()
            if live_due and self.write_live():
                file.dirty = True
            file.flush_if_dirty()
            if not batches:
                self.slot.give()  # waiting for Redis now (a hung scan must not hold a slot)
            ctl.progress()
            if not batches:
                try:
                    if src.poll():
                        last_progress = time.monotonic()
                except REDIS_DOWN:
                    pass
                if src.closed:
                    # sealed streams end the cursors; a closed scan with unsealed ones is over too
                    if time.monotonic() - last_progress > config.read_timeout * 4:
                        self.slot.take()
                        return StreamEnd(complete=True)
                if time.monotonic() - last_progress > stall:
                    self.slot.take()
                    ctl.warn(f"no data and no state change for {stall:.0f} s: given up")
                    return StreamEnd(complete=False)

    def write_live(self) -> bool:
        """What kinds show while the scan runs (spectra saved by MOSCA so far); True if written."""
        self._last_live = time.monotonic()
        wrote = False
        handle = self.file.handle
        for ch in self.plan.referenced:
            kind = self.appender.handlers[ch.stream]
            ctx = kindcalls.context(self.plan, self.scan_file, ch, self.desc.info,
                                    kindcalls.answers(kind.live_files_needed))
            nodes = kind.live(ctx)
            if not nodes:
                continue
            wrote = True
            with handle.lock:
                writer = TreeWriter()
                for path, node in nodes.items():
                    full = f"{ch.entry}/{path}"
                    parent, _, name = full.rpartition("/")
                    writer.write_at(handle.h5, parent, name, node, replace=True)
                    self.file.live_paths.add(full)  # the final tree replaces it
                writer.finish_links()
        return wrote
