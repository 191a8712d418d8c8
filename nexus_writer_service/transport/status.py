"""The completeness protocol: what the writer says of itself and of each scan, in Redis.

Lives in the same Redis as the scans, so BLISS (or anyone holding the data URL)
can ask without Tango: is a writer alive for this session, and what happened to
each scan (PENDING, WRITING, SUCCEEDED, FAILED, INCOMPLETE, SKIPPED)?

Keys (JSON strings):
  nexus_writer:<session>:heartbeat   the writer's pid, host, version; expires after TTL.
                                     Also the session's claim: set only if absent (one
                                     writer per session), renewed only by its owner
  nexus_writer:scan:<scan key>       one scan's record (``records.ScanRecord`` + session,
                                     updated); expires with the scan (7 days)
  nexus_writer:<session>:scans       sorted set of scan keys by last update (recent ones)
  nexus_writer:<session>:open_files  set of the files the writer has open (a writer that
                                     starts checks those a killed one left behind)
  nexus_writer:stop:<scan key>       asks the writer to stop writing that scan now (the Tango
                                     command ``stop_scan``); expires after a day
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

import numpy as np
import redis

from ..records import read_record
from ..states import FINAL_STATES
from .blissdata_api import IndexNoMoreThereError, ScanLoadError
from .blissdata_api import Stream as RawStream
from .raw_scan import RawDataStore
from .scans import ScanSource

PREFIX = "nexus_writer"
HEARTBEAT_PERIOD = 2.0
HEARTBEAT_TTL = 10
SCAN_TTL = 7 * 24 * 3600
RECENT_MAX = 1000



def heartbeat_key(session: str) -> str:
    return f"{PREFIX}:{session}:heartbeat"


def scan_state_key(scan_key: str) -> str:
    return f"{PREFIX}:scan:{scan_key}"


def recent_key(session: str) -> str:
    return f"{PREFIX}:{session}:scans"


def open_files_key(session: str) -> str:
    return f"{PREFIX}:{session}:open_files"


def stop_request_key(scan_key: str) -> str:
    return f"{PREFIX}:stop:{scan_key}"


def log_level_key(session: str) -> str:
    """The log level asked of the session's running writer (the Tango attribute writer_log_level)."""
    return f"{PREFIX}:{session}:log_level"


#: how long a stop request waits for its scan's writer (seconds)
STOP_REQUEST_TTL = 24 * 3600


class SessionTaken(RuntimeError):
    """Another writer, alive, holds the session: two writers would corrupt each other's state."""


#: renew the heartbeat if it is ours or absent (expired while Redis was away); else 0
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v and not string.find(v, ARGV[1], 1, true) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
#: delete the key only if it still holds ARGV[1]: our token (a clean stop), or the whole
#: value read before (a dead writer's claim, unless another writer renewed or took it since)
_DELETE_IF_HOLDS = """
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _process_gone(pid) -> bool:
    """True if no live process has this pid on this host (a zombie counts as gone)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


class StatusPublisher:
    """Writer side: heartbeat in a thread, scan states on every change.

    The heartbeat is also the claim on the session: ``start()`` sets it only if no other
    writer holds it (SET NX), and each beat renews it only if it is still ours. A writer
    that dies stops renewing and its claim expires after ``HEARTBEAT_TTL``; one that died
    on this host is recognised at once (its pid is gone), so a restart need not wait.
    """

    def __init__(self, redis_url: str, session: str, version: str = "", on_lost=None, paths: dict | None = None):
        self._redis = redis.Redis.from_url(redis_url)
        self.session = session
        self._token = uuid.uuid4().hex
        #: ``paths``: where the writer's files may go (``io.path_policy.PathPolicy.to_dict``):
        #: the Tango devices answer BLISS with it, so they refuse what the writer would refuse
        self._identity = {"session": session, "pid": os.getpid(), "host": socket.gethostname(),
                          "version": version, "started": time.time(), "token": self._token,
                          "paths": paths or {}}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: called (once, from the heartbeat thread) when another writer took the session
        self._on_lost = on_lost or (lambda holder: None)
        self.claimed = False
        #: another writer took the session: nothing more of it is written to Redis by us
        self.lost = False
        self._renewing = threading.Lock()

    def _payload(self) -> str:
        return json.dumps(dict(self._identity, time=time.time()))

    def claim(self) -> None:
        """Take the session, or raise SessionTaken naming the live writer that holds it."""
        key = heartbeat_key(self.session)
        for _ in range(3):
            if self._redis.set(key, self._payload(), nx=True, ex=HEARTBEAT_TTL):
                self.claimed = True
                return
            raw = self._redis.get(key)
            if raw is None:
                continue  # expired meanwhile
            try:
                holder = json.loads(raw)
            except ValueError:
                holder = {}
            if not isinstance(holder, dict):
                holder = {}
            if holder.get("host") == socket.gethostname() and holder.get("pid") != os.getpid() \
                    and _process_gone(holder.get("pid")):
                self._redis.eval(_DELETE_IF_HOLDS, 1, key, raw)  # a killed writer's claim
                continue
            since = holder.get("started")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(
                since, (int, float)) else "?"
            raise SessionTaken(
                f"session {self.session}: another writer is running (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {when}): not starting a second one "
                f"(it expires {HEARTBEAT_TTL} s after that writer stops)")
        raise SessionTaken(f"session {self.session}: the writer claim keeps changing hands: not starting")

    def start(self) -> None:
        """Claim the session (SessionTaken if another writer holds it), then beat."""
        self.claim()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if not self.claimed:
            return
        try:  # a writer that stops cleanly says so at once (and frees the session)
            self._redis.eval(_DELETE_IF_HOLDS, 1, heartbeat_key(self.session), self._token)
        except redis.RedisError:
            pass
        self.claimed = False

    def renew(self) -> bool:
        """One beat now; False once another writer holds the session (``on_lost`` is then
        called, once). Also called by a scan that sees Redis back after an outage: its
        first append must not wait for the next beat to learn the session changed hands."""
        with self._renewing:
            if self.lost or not self.claimed:
                return not self.lost  # never claimed, or released by a clean stop: nothing to renew
            try:
                ours = self._redis.eval(_RENEW, 1, heartbeat_key(self.session), self._token,
                                        self._payload(), HEARTBEAT_TTL)
            except redis.RedisError:
                return True  # Redis away: the heartbeat expires, which is the truth
            if ours:
                return True
            self.lost, self.claimed = True, False
            try:
                holder = json.loads(self._redis.get(heartbeat_key(self.session)) or "{}")
            except (redis.RedisError, ValueError):
                holder = {}
        self._on_lost(holder if isinstance(holder, dict) else {})
        return False

    def _beat(self) -> None:
        while not self._stop.is_set() and self.renew():
            self._follow_log_level()
            self._stop.wait(HEARTBEAT_PERIOD)

    def _follow_log_level(self) -> None:
        """The level a control room asked (``StatusReader.set_log_level``), taken at each beat."""
        try:
            raw = self._redis.get(log_level_key(self.session))
        except redis.RedisError:
            return
        level = logging.getLevelName(raw.decode()) if raw else None
        logger = logging.getLogger("nexus_writer_service")
        if isinstance(level, int) and logger.level != level:
            logger.setLevel(level)
            logger.log(max(level, logging.INFO), "[%s] log level %s (asked through Redis)", self.session,
                       logging.getLevelName(level))

    def scan(self, state) -> None:
        """Publish one scan's state (a dataclass or dict with at least ``key``)."""
        if self.lost:
            return  # the writer that took the session over owns its scans' records now
        data = state.to_dict() if hasattr(state, "to_dict") else dict(state)
        data["session"] = self.session
        data["updated"] = time.time()
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(scan_state_key(data["key"]), json.dumps(data, default=str), ex=SCAN_TTL)
            pipe.zadd(recent_key(self.session), {data["key"]: data["updated"]})
            pipe.zremrangebyrank(recent_key(self.session), 0, -RECENT_MAX - 1)
            pipe.execute()
        except redis.RedisError:
            pass  # the file keeps the state; Redis gets it on the next change


    def stop_requested(self, scan_key: str) -> bool:
        """True when someone asked to stop writing this scan (``StatusReader.request_stop``)."""
        try:
            return bool(self._redis.exists(stop_request_key(scan_key)))
        except redis.RedisError:
            return False

    def file_opening(self, path: str) -> None:
        """Said before a file is opened for writing: a kill from now on may damage it."""
        if self.lost:
            return  # the set is the new writer's now (it checks what it lists when it starts)
        try:
            self._redis.sadd(open_files_key(self.session), path)
        except redis.RedisError:
            pass  # the files of unfinished scans are checked anyway

    def file_closed(self, path: str) -> None:
        if self.lost:
            return  # the path may be the new writer's record of the same file
        try:
            self._redis.srem(open_files_key(self.session), path)
        except redis.RedisError:
            pass

    def forget_open_files(self, paths) -> None:
        if paths and not self.lost:
            self._redis.srem(open_files_key(self.session), *paths)


class StatusReader:
    """Reader side: BLISS, the status command, the service."""

    def __init__(self, redis_url: str):
        self._redis = redis.Redis.from_url(redis_url)

    def writer(self, session: str) -> dict | None:
        """The live writer of ``session`` (its heartbeat), or None."""
        raw = self._redis.get(heartbeat_key(session))
        return json.loads(raw) if raw else None

    def scan(self, scan_key: str) -> dict | None:
        """The scan's record (``records.read_record``: every field, typed), or None."""
        return read_record(self._redis.get(scan_state_key(scan_key)))

    def recent(self, session: str, count: int = 20) -> list[dict]:
        keys = [k.decode() for k in self._redis.zrevrange(recent_key(session), 0, count - 1)]
        states = [self.scan(k) for k in keys]
        return [s for s in states if s]

    def ping(self) -> str | None:
        """None if Redis answers, else what went wrong (for a console message)."""
        try:
            self._redis.ping()
            return None
        except redis.RedisError as exc:
            return f"{type(exc).__name__}: {exc}"

    def open_files(self, session: str) -> set[str]:
        return {p.decode() for p in self._redis.smembers(open_files_key(session))}

    def set_log_level(self, session: str, level: str) -> None:
        """Ask the session's running writer (and the next ones) to log at ``level`` (DEBUG, INFO...)."""
        self._redis.set(log_level_key(session), level)

    def request_stop(self, scan_key: str) -> None:
        """Ask the writer of this scan to stop writing it: it finishes the entry with what it
        has (INCOMPLETE, saying why) and reads no more of the scan."""
        self._redis.set(stop_request_key(scan_key), str(time.time()), ex=STOP_REQUEST_TTL)

    def sessions(self) -> list[str]:
        names = set()
        for pattern in (f"{PREFIX}:*:heartbeat", f"{PREFIX}:*:scans"):
            for key in self._redis.scan_iter(pattern):
                parts = key.decode().split(":")
                if len(parts) == 3 and parts[1] != "scan":
                    names.add(parts[1])
        return sorted(names)

    def wait(self, scan_key: str, timeout: float, period: float = 0.2) -> dict | None:
        """The scan's state once final (or the last one seen when ``timeout`` expires)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.scan(scan_key)
            if (state and state.get("status") in FINAL_STATES) or time.monotonic() >= deadline:
                return state
            time.sleep(period)


class PlotReader:
    """Service side: a few points of a scan's streams, for the status page's small plots.

    The points come from Redis, where the scan's publisher put them, not from the file:
    the service already talks to this Redis, a bounded read (the last N points, or N
    samples of a finished scan) costs a few round trips whatever the scan's size, and
    the page never opens an HDF5 file that a writer is appending to (no SWMR: a reader
    can meet half-flushed metadata, and a slow or remote file system would stall the
    page). The price: once Redis trimmed or expired a scan's data, its plot is gone
    (the page says so); the file still has everything.

    Streams are read raw (blissdata's plain ``Stream`` over the event stream), like
    the writer reads them: no plugin falls back to reading the file behind our back.
    """

    #: a finished scan of at most this many points is read whole, then decimated;
    #: a longer one is sampled point by point
    FULL_READ = 20000
    #: scans kept loaded (a running scan's plot is refreshed every few seconds)
    KEEP = 64

    def __init__(self, redis_url: str):
        self._url = redis_url
        self._ds = None
        self._loaded: dict = {}  # scan key -> (blissdata scan, ScanDescription)

    def _store(self):
        if self._ds is None:  # lazily: Redis may be away when the service starts
            self._ds = RawDataStore(self._url)
        return self._ds

    def description(self, scan_key: str):
        """The scan's ``ScanDescription`` once its streams exist (PREPARED), else None.

        Raises ``LookupError`` for a key that is no scan (anyone may write a state record).
        """
        if scan_key in self._loaded:
            return self._loaded[scan_key][1]
        source = ScanSource(self._store(), scan_key)
        try:
            source.load(timeout=0)
        except (ScanLoadError, RuntimeError) as exc:  # RuntimeError: not a scan key at all
            raise LookupError(f"no scan {scan_key!r} in Redis ({type(exc).__name__})") from exc
        if not source.scan.streams:
            return None  # not prepared yet: ask again on the next refresh
        desc = source.description()
        while len(self._loaded) >= self.KEEP:
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[scan_key] = (source.scan, desc)
        return desc

    def forget(self, scan_key: str) -> None:
        self._loaded.pop(scan_key, None)

    def points(self, scan_key: str, names: list[str], count: int, whole: bool):
        """``(indices, {name: values})`` of 0D streams ``names``, over the points all have.

        ``whole=False``: the last ``count`` points (a running scan). ``whole=True``: the
        whole scan, read entirely up to ``FULL_READ`` points, else ``count`` points
        sampled evenly (a finished scan: its plot is made once). Raises ``LookupError``
        when Redis no longer holds the points (trimmed or expired).
        """
        if scan_key not in self._loaded and self.description(scan_key) is None:
            return np.arange(0), {n: np.arange(0.0) for n in names}
        scan = self._loaded[scan_key][0]
        streams = {n: RawStream(scan.streams[n].event_stream) for n in names}
        n = min((len(s) for s in streams.values()), default=0)
        try:
            if whole and n > self.FULL_READ:
                index = np.unique(np.linspace(0, n - 1, max(2, count)).astype(int))
                values = {k: np.array([s[int(i)] for i in index], dtype=float) for k, s in streams.items()}
            else:
                start = 0 if whole else max(0, n - count)
                index = np.arange(start, n)
                values = {k: np.asarray(s[start:n], dtype=float).reshape(-1)[: n - start]
                          for k, s in streams.items()}
        except IndexNoMoreThereError as exc:
            raise LookupError(f"points no longer in Redis ({exc})") from exc
        return index, values
