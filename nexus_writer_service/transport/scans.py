"""Following one scan in Redis with blissdata: state, streams, data.

This is the only module that holds blissdata scan and stream objects; the rest
of the writer sees ``ScanDescription`` and numpy batches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import redis
from blissdata.exceptions import EndOfStream, IndexNoMoreThereError
from blissdata.redis_engine.scan import ScanState
from blissdata.redis_engine.store import DataStore
from blissdata.streams import CursorGroup
from blissdata.streams.default import Stream as RawStream

from ..descriptions import ScanDescription, StreamDescription, describe_stream

_logger = logging.getLogger(__name__)

PREPARED, CLOSED = ScanState.PREPARED, ScanState.CLOSED


def _describe(name: str, stream) -> StreamDescription:
    """What a stream says of itself in Redis, without its blissdata plugin class.

    A plugin that is missing here (``MissingPluginStream``) or cannot reach its
    detector server (``BrokenPluginStream``: Lima2's needs the conductor) is normal:
    the low-level event stream always reads.
    """
    events = stream.event_stream
    return describe_stream(name, events.info, events.encoding)


@dataclass
class Batch:
    """New points of one stream. ``lost`` points before them were trimmed from Redis.

    ``error``: the stream's data cannot be read as its description says (wrong dtype,
    points that disagree with their count): it is no longer followed.
    """

    data: object
    lost: int = 0
    error: str | None = None


class UndecodableStream(Exception):
    """One stream's Redis entries cannot be decoded as the stream describes them."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _guard_decoding(events, name: str) -> None:
    """Make a stream whose entries do not decode fail alone, by name.

    blissdata decodes every stream of a multi-stream read in one go: one stream
    published with another dtype (``buffer size must be a multiple of element
    size``) would fail the read of all. Decoding happens before any cursor moves,
    so the read can be made again without that stream. Points that disagree with
    the count their entries announce (a batch of another shape) are refused too:
    they would shift every later point.
    """
    decode = events._decode_entries

    def guarded(entries):
        try:
            index, data = decode(entries)
        except Exception as exc:
            raise UndecodableStream(name, f"data cannot be decoded ({type(exc).__name__}: {exc})") from exc
        announced = sum(e.length for e in entries if not e.is_seal)
        if announced and len(data) != announced:
            raise UndecodableStream(name, f"{len(data)} points decoded where its entries announce "
                                          f"{announced} (shape or dtype differs from the stream's)")
        return index, data

    events._decode_entries = guarded


class ScanSource:
    def __init__(self, data_store: DataStore, key: str, loaded=None):
        self.ds = data_store
        self.key = key
        self.scan = None
        #: a load the caller (the listener) just made: the first load() starts from it
        self._loaded = loaded
        #: ``scan`` was read after CLOSED was seen: its document and streams are final
        self._final = False
        self._cursors: CursorGroup | None = None
        self._subscan_cursor = None

    # -- state -------------------------------------------------------------
    def load(self, timeout: float = 10.0, period: float = 0.02) -> None:
        """Load the scan, reloading while the PREPARED race hides its streams.

        blissdata's ``load_scan`` reads the scan document, then its state: a
        publisher preparing in between gives a PREPARED scan without streams.
        A scan that really has none is caught at the end (all published streams
        are compared with what was written). Same race at the other end: a scan
        closing in between comes CLOSED with the document of before (no end_reason,
        no end positioners); CLOSED is final, so one more load gets the final one.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.scan, self._loaded = self._loaded or self.ds.load_scan(self.key), None
            if self.scan.state >= CLOSED:
                if not self._info_is_current():
                    self.scan = self.ds.load_scan(self.key)
                self._final = True
                return
            if self.scan.state < PREPARED or self.scan.streams or time.monotonic() > deadline:
                return
            time.sleep(period)

    def _info_is_current(self) -> bool:
        """True if the scan document in Redis has the ``info`` and streams loaded.

        One JSON read (~0.2 ms) instead of a second ``load_scan`` (~1 ms, redis-om),
        which hundreds of short scans notice. After PREPARED only ``info`` and the
        state change, and any doubt (another layout, a value read back differently)
        reloads.
        """
        try:
            raw = self.ds._redis.json().get(self.key, "$.info", "$.data_streams")
            info, streams = raw["$.info"], raw["$.data_streams"]
        except (redis.RedisError, KeyError, TypeError, AttributeError):  # AttributeError: blissdata changed
            return False
        return (len(info) == 1 and info[0] == self.scan.info
                and len(streams) == 1 and set(streams[0]) == set(self.scan.streams))

    @property
    def state(self) -> ScanState:
        return self.scan.state

    @property
    def closed(self) -> bool:
        return self.scan.state >= CLOSED

    def wait(self, state: ScanState, timeout: float) -> bool:
        """Wait until the scan reached ``state``; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.scan.state < state:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._update(block=True, timeout=min(remaining, 1.0))
            if self.scan.state >= PREPARED and not self.scan.streams:
                self.load()
        return True

    def poll(self) -> bool:
        """Non-blocking state refresh; True if the state changed."""
        return self._update(block=False)

    def _update(self, **kwargs) -> bool:
        # blissdata re-reads the document when it sees a new state: after CLOSED, the final one
        changed = self.scan.update(**kwargs)
        if changed and self.scan.state >= CLOSED:
            self._final = True
        return changed

    # -- description -------------------------------------------------------
    def description(self) -> ScanDescription:
        s = self.scan
        streams = [_describe(name, stream) for name, stream in s.streams.items()]
        return ScanDescription(
            key=s.key, name=s.name, number=s.number, session=s.session,
            info=dict(s.info), streams=streams, path=getattr(s, "path", None),
            data_policy=getattr(s, "data_policy", None),
            proposal=getattr(s, "proposal", None), collection=getattr(s, "collection", None),
            dataset=getattr(s, "dataset", None),
        )

    @property
    def info(self) -> dict:
        return dict(self.scan.info)

    # -- data --------------------------------------------------------------
    def follow(self, names: list[str]) -> None:
        """Read these streams' raw events (numeric points or JSON documents) from now on.

        Raw: blissdata's plain ``Stream`` over each event stream, whatever its plugin
        class would do (fetch frames from a detector server, or read trimmed points
        back from the file we are writing).
        """
        streams = []
        for n in names:
            events = self.scan.streams[n].event_stream
            _guard_decoding(events, n)
            streams.append(RawStream(events))
        self._cursors = BoundedCursorGroup(streams) if streams else None

    def close(self) -> None:
        """Forget the cursors (and what they buffer): the scan is done with."""
        self._cursors = None

    def read(self, timeout: float) -> dict[str, Batch]:
        """New data of the followed streams; raises EndOfStream when all are sealed and read."""
        if self._cursors is None:
            raise EndOfStream
        try:
            views = self._cursors.read(block=True, timeout=timeout)
        except UndecodableStream as bad:
            self._cursors.drop(bad.name)
            return {bad.name: Batch(None, error=bad.reason)}
        out = {}
        nbytes = 0
        for stream, view in views.items():
            try:
                out[stream.name] = Batch(view.get_data())
                nbytes += getattr(out[stream.name].data, "nbytes", 0)
            except (IndexNoMoreThereError, OSError, KeyError):
                # Trimmed from Redis before we read it. Hdf5BackedStream then reads
                # its fallback file, which is the very file we are writing: the
                # points are lost either way, the ones still in Redis are not.
                lost = getattr(getattr(view, "_events", None), "nb_expired", len(view))
                data = view.get_data(lost, None) if lost < len(view) else []
                out[stream.name] = Batch(data, lost)
        self._cursors.adapt(nbytes)
        return out

    def published_lengths(self, known: dict[str, int] | None = None) -> dict[str, int | None]:
        """Events in every stream of the scan, from a load made after it closed (a stale
        one may lack streams); None for a stream whose Redis key is gone (deleted or
        evicted: what it held is lost).

        ``known``: lengths already certain (streams read to their sealed end), not asked again.
        """
        known = known or {}
        lengths: dict[str, int | None] = {}
        scan = self.scan if self._final else self.ds.load_scan(self.key)
        streams = list(scan.streams.items())
        try:  # a stream whose key is gone reads as empty and sealed: ask Redis (one round trip)
            pipe = self.ds._redis.pipeline(transaction=False)
            for _, stream in streams:
                pipe.exists(stream.event_stream.key)
            present = [bool(n) for n in pipe.execute()]
        except redis.RedisError:
            present = [True] * len(streams)
        for (name, stream), there in zip(streams, present):
            if not there:
                lengths[name] = None
            elif name in known:
                lengths[name] = known[name]
            else:
                try:
                    lengths[name] = len(stream.event_stream)
                except redis.RedisError:
                    lengths[name] = 0
        return lengths

    def child_path(self, key: str) -> tuple[str | None, int]:
        child = self.ds.load_scan(key)
        return child.path, child.number


class BoundedCursorGroup(CursorGroup):
    """blissdata's CursorGroup, reading at most about ``READ_BYTES`` per call.

    blissdata asks Redis for up to 100 entries of every stream in one call: with
    spectra published in batches that is hundreds of MB in one reply, plus its decoded
    copy (S2 of benchmarks/: 737 MB peak). The entry count per call adapts to what
    the last reads returned. Relies on blissdata's (private) multi-stream read; where
    that is missing, reading is blissdata's own.
    """

    READ_BYTES = 32 << 20
    MAX_ENTRIES = 100  # blissdata's own limit
    #: where the entry count starts: an entry can hold a whole batch of points
    FIRST_ENTRIES = 8

    def __init__(self, streams):
        super().__init__(streams)
        self.count = self.FIRST_ENTRIES
        self._bounded = hasattr(self, "_read_next_events_multi") and hasattr(self, "_create_data_views")

    def drop(self, name: str) -> None:
        """Stop following one stream (the others go on where they are)."""
        for key, cursor in list(self._active_cursors.items()):
            if cursor._hl_stream.name == name:
                self._dead_cursors[key] = self._active_cursors.pop(key)

    def adapt(self, nbytes: int) -> None:
        if nbytes > self.READ_BYTES:
            self.count = max(1, int(self.count * self.READ_BYTES / nbytes))
        elif nbytes < self.READ_BYTES // 4 and self.count < self.MAX_ENTRIES:
            self.count = min(self.MAX_ENTRIES, self.count * 2)

    def read(self, block: bool = True, timeout: float = 0, last_only: bool = False):
        if not self._bounded or last_only:
            return super().read(block=block, timeout=timeout, last_only=last_only)
        if not self._active_cursors:
            raise EndOfStream("All streams have been read until the end")
        ranges = self._read_next_events_multi(self._active_cursors, int(timeout * 1000) if block else None,
                                              self.count, set())
        views = self._create_data_views(ranges, False)
        if not views and not self._active_cursors:
            raise EndOfStream("All streams have been read until the end")
        return views


def scans_since(ds: DataStore, seconds: float) -> tuple[str, list[str]]:
    """(timetag to listen from, keys of the scans created in the last ``seconds``).

    Reads blissdata's scan-creation stream directly: ``search_existing_scans``
    fails with redis-py 8, which speaks RESP3 by default (blissdata 2.4 parses
    RESP2 search replies), and the stream is bounded in time by its own IDs.
    blissdata keeps its last 2048 entries.
    """
    from blissdata.redis_engine.scan import scan_creation_stream

    timetag = ds.get_last_scan_timetag()
    if seconds <= 0:
        return timetag, []
    start_ms = max(0, int((time.time() - seconds) * 1000))
    entries = ds._redis.xrange(scan_creation_stream, min=f"{start_ms}-0", max=timetag)
    return timetag, [data[b"key"].decode() for _, data in entries]
