"""Following one scan in Redis with blissdata: state, streams, data.

This is the only module that holds blissdata scan and stream objects; the rest
of the writer sees ``ScanDescription`` and numpy batches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from ..descriptions import ScanDescription, StreamDescription, describe_stream
from ..states import UNCHECKED
from .blissdata_api import (
    SCAN_DOC_INFO,
    SCAN_DOC_STREAMS,
    CursorGroup,
    DataStore,
    EndOfStream,
    IndexNoMoreThereError,
    plugin_name,
    redis_client,
    scan_creation_stream,
)
from .blissdata_api import ScanState as BlissScanState  # blissdata's enum, not our record
from .blissdata_api import Stream as RawStream

_logger = logging.getLogger(__name__)

PREPARED, CLOSED = BlissScanState.PREPARED, BlissScanState.CLOSED


#: what Redis raises when it is unreachable: the layers above retry on these
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def _describe(name: str, stream) -> StreamDescription:
    """What a stream says of itself in Redis, without its blissdata plugin class
    (never built here: ``transport.raw_scan``); the low-level event stream always reads.
    """
    events = stream.event_stream
    info = events.info or {}
    return describe_stream(name, info, events.encoding, plugin=plugin_name(info))


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
    they would shift every later point. (``EventStream._decode_entries``: private, listed in
    ``blissdata_api.PRIVATE``.)
    """
    decode = events._decode_entries

    def guarded(entries):
        _learn_entry_bytes(events, entries)
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


def _learn_entry_bytes(events, entries) -> None:
    """Remember the largest payload of this stream's recent entries (``BoundedCursorGroup``).

    How many points a publisher puts in one entry is known only from the entries
    themselves: one for BLISS's counters at slow rates, a thousand for a fast publisher's batches.
    """
    sizes = [len(e.batch.payload) for e in entries if not e.is_seal and e.batch is not None]
    if sizes:
        events._nxw_entry_bytes = max(sizes)


class ScanSource:
    def __init__(self, data_store: DataStore, key: str, loaded=None):
        self.ds = data_store
        self.key = key
        #: blissdata's Scan once loaded (``load``); its attributes differ between blissdata
        #: generations (``blissdata_api``), so it is not typed here
        self.scan: Any = None
        #: a load the caller (the listener) just made: the first load() starts from it
        self._loaded = loaded
        #: ``scan`` was read after CLOSED was seen: its document and streams are final
        self._final = False
        self._cursors: BoundedCursorGroup | None = None

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

        One JSON read instead of a second ``load_scan`` (redis-om, slower),
        which hundreds of short scans notice. After PREPARED only ``info`` and the
        state change, and any doubt (another layout, a value read back differently)
        reloads.
        """
        try:
            raw = redis_client(self.ds).json().get(self.key, SCAN_DOC_INFO, SCAN_DOC_STREAMS)
            info, streams = raw[SCAN_DOC_INFO], raw[SCAN_DOC_STREAMS]
        except (redis.RedisError, KeyError, TypeError, AttributeError):  # AttributeError: blissdata changed
            return False
        return (len(info) == 1 and info[0] == self.scan.info
                and len(streams) == 1 and set(streams[0]) == set(self.scan.streams))

    @property
    def closed(self) -> bool:
        return self.scan.state >= CLOSED

    def wait(self, state: BlissScanState, timeout: float) -> bool:
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
    def follow(self, names: list[str], last_only: frozenset | set = frozenset()) -> None:
        """Read these streams' raw events (numeric points or JSON documents) from now on.

        Raw: blissdata's plain ``Stream`` over each event stream, whatever its plugin
        class would do (fetch frames from a detector server, or read trimmed points
        back from the file we are writing). ``last_only``: streams whose events are
        cumulative statuses: only the newest is read each time (100,000 Lima2 progress
        ticks are one Redis read each time, not 100,000 decoded events).
        """
        streams = []
        for n in names:
            events = self.scan.streams[n].event_stream
            _guard_decoding(events, n)
            streams.append(LastOnlyStream(events) if n in last_only else RawStream(events))
        self._cursors = BoundedCursorGroup(streams) if streams else None

    def close(self) -> None:
        """Forget the cursors (and what they buffer): the scan is done with."""
        self._cursors = None

    def read(self, timeout: float) -> dict[str, Batch]:
        """New data of the followed streams; raises EndOfStream when all are sealed and read."""
        if self._cursors is None:
            raise EndOfStream
        out: dict[str, Batch] = {}
        try:
            views = self._cursors.read(block=True, timeout=timeout)
        except UndecodableStream as bad:  # blissdata's own read (not bounded)
            self._cursors.drop(bad.name)
            views = {}
            self._cursors.undecodable[bad.name] = bad.reason
        except EndOfStream:
            if not self._cursors.undecodable:
                raise
            views = {}  # the last stream followed was dropped: say why first
        for name, reason in self._cursors.undecodable.items():
            out[name] = Batch(None, error=reason)
        self._cursors.undecodable.clear()
        for stream, view in views.items():
            try:
                out[stream.name] = Batch(view.get_data())
            except (IndexNoMoreThereError, OSError, KeyError):
                # Trimmed from Redis before we read it. Hdf5BackedStream then reads
                # its fallback file, which is the very file we are writing: the
                # points are lost either way, the ones still in Redis are not.
                lost = getattr(getattr(view, "_events", None), "nb_expired", len(view))
                data = view.get_data(lost, None) if lost < len(view) else []
                out[stream.name] = Batch(data, lost)
        return out

    def published_lengths(self, known: dict[str, int] | None = None) -> dict[str, int | None]:
        """Events in every stream of the scan, from a load made after it closed (a stale
        one may lack streams); None for a stream whose Redis key is gone (deleted or
        evicted: what it held is lost); ``UNCHECKED`` where Redis could not say.

        ``known``: lengths already certain (streams read to their sealed end), not asked again.
        """
        known = known or {}
        lengths: dict[str, int | None] = {}
        scan = self.scan if self._final else self.ds.load_scan(self.key)
        streams = list(scan.streams.items())
        try:  # a stream whose key is gone reads as empty and sealed: ask Redis (one round trip)
            pipe = redis_client(self.ds).pipeline(transaction=False)
            for _, stream in streams:
                pipe.exists(stream.event_stream.key)
            present = [bool(n) for n in pipe.execute()]
        except redis.RedisError:
            return {name: known.get(name, UNCHECKED) for name, _ in streams}
        for (name, stream), there in zip(streams, present):
            if not there:
                lengths[name] = None
            elif name in known:
                lengths[name] = known[name]
            else:
                try:
                    lengths[name] = len(stream.event_stream)
                except redis.RedisError:
                    lengths[name] = UNCHECKED
        return lengths

    def data_available(self) -> bool:
        """The scan is still in Redis (its data expire with it): worth waiting for a disk or a lock."""
        return bool(redis_client(self.ds).exists(self.key))

    def child_path(self, key: str) -> tuple[str | None, int]:
        child = self.ds.load_scan(key)
        return child.path, child.number


class LastOnlyStream(RawStream):
    """A raw stream of which only the newest event matters (blissdata reads the last entry)."""

    def _need_last_only(self, last_only):
        return True


class BoundedCursorGroup(CursorGroup):
    """blissdata's CursorGroup, reading at most about ``READ_BYTES`` per call.

    blissdata asks Redis for up to 100 entries of every stream in one call: with
    spectra published in batches that is hundreds of MB in one reply, plus its decoded
    copy. Here the entries asked per call follow from each stream's
    entry size, learned from the entries read (``_learn_entry_bytes``):

    - a stream not read yet whose points are large (>= ``LARGE_POINT`` bytes) may hold
      any number of them per entry: it is read alone, 1 entry, until its size is known;
      small points are assumed ``GUESS_POINTS`` per entry until known;
    - when one entry of every stream fits ``READ_BYTES``, all streams are read at once,
      ``READ_BYTES / sum(entry sizes)`` entries each (at most ``MAX_ENTRIES``, 10 x blissdata's);
    - when it does not (huge entries, or an entry size to learn), the streams are read a
      group at a time (each group fitting ``READ_BYTES``), in turn, without blocking; only
      when none has data does one blocking read of 1 entry wait for all (live data,
      where new entries come one at a time).

    A drained reply is therefore at most ``READ_BYTES``, or one entry when a single entry
    is larger, the first read included. Relies on blissdata's (private) multi-stream read and cursor
    internals (``blissdata_api.PRIVATE``, checked by tests/integration/test_blissdata_contract.py); where that
    is missing, reading is blissdata's own.
    """

    #: with larger replies the peak memory grew with the scan's length (the allocator keeps
    #: what replies of that size leave behind); with these it stays flat at the same CPU time
    #: (doc/benchmarks.md)
    READ_BYTES = 16 << 20
    #: blissdata asks 100: small entries (one event or point each: statuses, progress ticks,
    #: 1-point sends) then cost a round trip per 100; the byte budget bounds the reply anyway
    MAX_ENTRIES = 1000
    #: points at least this large (bytes): an unknown entry size is not guessed
    LARGE_POINT = 1024
    #: points per entry assumed for small points until an entry was read
    GUESS_POINTS = 1024
    #: what one entry costs beyond its payload once parsed (ID, field dict, StreamEntry: Python
    #: objects): thousands of counters sending small entries would otherwise fill one read
    #: with many times its byte budget in objects
    ENTRY_OVERHEAD = 1024

    def __init__(self, streams) -> None:
        super().__init__(streams)
        #: streams dropped because their entries do not decode: why (reported by the next read)
        self.undecodable: dict[str, str] = {}
        self._bounded = hasattr(self, "_read_next_events_multi") and hasattr(self, "_create_data_views")
        self._turn = 0
        #: what the last read asked Redis: (stream names, entries per stream) of each XREAD
        self.requests: list[tuple[list[str], int]] = []

    def drop(self, name: str) -> None:
        """Stop following one stream (the others go on where they are)."""
        for key, cursor in list(self._active_cursors.items()):
            if cursor._hl_stream.name == name:
                self._dead_cursors[key] = self._active_cursors.pop(key)

    @staticmethod
    def _point_bytes(cursor) -> int:
        encoding = getattr(cursor._ll_stream, "encoding", None) or {}
        try:
            shape = [max(1, int(d)) for d in encoding.get("shape") or []]
            return int(np.dtype(encoding.get("dtype_str", "u1")).itemsize * int(np.prod(shape or [1])))
        except (TypeError, ValueError):
            return 1

    def _entry_bytes(self, cursor) -> tuple[int, bool]:
        """(bytes of one entry, known) of a cursor's stream."""
        known = getattr(cursor._ll_stream, "_nxw_entry_bytes", None)
        if known is not None:
            return max(1, known) + self.ENTRY_OVERHEAD, True
        point = self._point_bytes(cursor)
        return (point, False) if point >= self.LARGE_POINT else (point * self.GUESS_POINTS, True)

    def _plan(self) -> list[tuple[dict, int]]:
        """The XREADs of one call, in order: (cursors, entries asked per stream)."""
        active = {k: c for k, c in self._active_cursors.items() if not c._hl_stream._need_last_only(False)}
        if not active:
            return []
        sealed = {k: c for k, c in active.items() if c._ll_eos}
        known: list[tuple[str, Any, int]] = []
        unknown: list[tuple[str, Any, int]] = []
        for key, cursor in active.items():
            if key not in sealed:
                n, sure = self._entry_bytes(cursor)
                (known if sure else unknown).append((key, cursor, n))
        total = sum(n for _, _, n in known)
        if not unknown and total <= self.READ_BYTES:
            return [(dict(active), self._count(total))]
        groups: list[tuple[dict, int]] = []
        group: dict = {}
        used = 0
        for key, cursor, n in known:  # one entry of each fits READ_BYTES, a group at a time
            if group and used + n > self.READ_BYTES:
                groups.append((group, self._count(used)))
                group, used = {}, 0
            group[key] = cursor
            used += n
        if group:
            groups.append((group, self._count(used)))
        groups += [({key: cursor}, 1) for key, cursor, _ in unknown]  # learnt alone
        turn = self._turn % len(groups)
        groups = groups[turn:] + groups[:turn]
        groups[0][0].update(sealed)
        return groups

    def _count(self, nbytes: int) -> int:
        return max(1, min(self.MAX_ENTRIES, self.READ_BYTES // max(1, nbytes)))

    def read(self, block: bool = True, timeout: float = 0, last_only: bool = False):
        if not self._bounded or last_only:
            return super().read(block=block, timeout=timeout, last_only=last_only)
        if not self._active_cursors:
            raise EndOfStream("All streams have been read until the end")
        self.requests = []
        views: dict = {}
        last = {k: c for k, c in self._active_cursors.items() if c._hl_stream._need_last_only(False)}
        if last:  # statuses: their newest entry, one small read whatever was sent meanwhile
            views.update(self._safe(lambda cs: self._create_data_views(self._read_last_event_multi(cs), True),
                                    last))
            if views:
                block = False
        groups = self._plan()
        ms = int(timeout * 1000) if block else None
        if not groups:
            if not views and block and self._active_cursors:
                views.update(self._xread(dict(self._active_cursors), ms, 1))
        elif len(groups) == 1:
            views.update(self._xread(groups[0][0], ms, groups[0][1]))
        else:  # in turn, without waiting; the next call starts with the next group
            for group, count in groups:
                group = {k: c for k, c in group.items() if k in self._active_cursors}
                if group:
                    views.update(self._xread(group, None, count))
                if views:
                    self._turn += 1
                    break
            if not views and block and self._active_cursors:  # nothing anywhere: wait for all
                views.update(self._xread(dict(self._active_cursors), ms, 1))
        if not views and not self._active_cursors:
            raise EndOfStream("All streams have been read until the end")
        return views

    def _safe(self, read, cursors: dict) -> dict:
        """``read(cursors)``; a stream whose entries do not decode is dropped (its reason kept
        in ``undecodable``) and the read made again without it: decoding fails before any
        cursor moves, so the others lose nothing."""
        cursors = dict(cursors)
        while cursors:
            try:
                return read(cursors)
            except UndecodableStream as bad:
                self.undecodable[bad.name] = bad.reason
                self.drop(bad.name)
                cursors = {k: c for k, c in cursors.items() if k in self._active_cursors}
        return {}

    def _xread(self, cursors: dict, timeout_ms, count: int) -> dict:
        return self._safe(lambda cs: self._xread_all(cs, timeout_ms, count), cursors)

    def _xread_all(self, cursors: dict, timeout_ms, count: int) -> dict:
        self.requests.append(([c._hl_stream.name for c in cursors.values()], count))
        last = {k for k, c in cursors.items() if c._hl_stream._need_last_only(False)}
        ranges = self._read_next_events_multi(cursors, timeout_ms, count, last)
        return self._create_data_views(ranges, False)


def scans_since(ds: DataStore, seconds: float) -> tuple[str, list[str]]:
    """(timetag to listen from, keys of the scans created in the last ``seconds``).

    Reads blissdata's scan-creation stream directly: ``search_existing_scans``
    fails with redis-py 8, which speaks RESP3 by default (blissdata 2.4 parses
    RESP2 search replies), and the stream is bounded in time by its own IDs.
    blissdata keeps its last 2048 entries.
    """
    timetag = ds.get_last_scan_timetag()
    if seconds <= 0:
        return timetag, []
    start_ms = max(0, int((time.time() - seconds) * 1000))
    entries = redis_client(ds).xrange(scan_creation_stream, min=f"{start_ms}-0", max=timetag)
    return timetag, [data[b"key"].decode() for _, data in entries]
