"""The completeness protocol: what the writer says of itself and of each scan, in Redis.

Lives in the same Redis as the scans, so BLISS (or anyone holding the data URL)
can ask without Tango: is a writer alive for this session, and what happened to
each scan (PENDING, WRITING, SUCCEEDED, FAILED, INCOMPLETE, SKIPPED)?

Keys (JSON strings):
  nexus_writer:<session>:heartbeat   the writer's pid, host, version; expires after TTL
  nexus_writer:scan:<scan key>       one scan's state; expires with the scan (7 days)
  nexus_writer:<session>:scans       sorted set of scan keys by last update (recent ones)
  nexus_writer:<session>:open_files  set of the files the writer has open (a writer that
                                     starts checks those a killed one left behind)
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, is_dataclass

import redis

from ..states import FINAL_STATES

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


class StatusPublisher:
    """Writer side: heartbeat in a thread, scan states on every change."""

    def __init__(self, redis_url: str, session: str, version: str = ""):
        self._redis = redis.Redis.from_url(redis_url)
        self.session = session
        self._identity = {"session": session, "pid": os.getpid(), "host": socket.gethostname(),
                          "version": version, "started": time.time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:  # a writer that stops cleanly says so at once
            self._redis.delete(heartbeat_key(self.session))
        except redis.RedisError:
            pass

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                payload = dict(self._identity, time=time.time())
                self._redis.set(heartbeat_key(self.session), json.dumps(payload), ex=HEARTBEAT_TTL)
            except redis.RedisError:
                pass  # Redis away: the heartbeat expires, which is the truth
            self._stop.wait(HEARTBEAT_PERIOD)

    def scan(self, state) -> None:
        """Publish one scan's state (a dataclass or dict with at least ``key``)."""
        data = asdict(state) if is_dataclass(state) else dict(state)
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


    def file_opening(self, path: str) -> None:
        """Said before a file is opened for writing: a kill from now on may damage it."""
        try:
            self._redis.sadd(open_files_key(self.session), path)
        except redis.RedisError:
            pass  # the files of unfinished scans are checked anyway

    def file_closed(self, path: str) -> None:
        try:
            self._redis.srem(open_files_key(self.session), path)
        except redis.RedisError:
            pass

    def forget_open_files(self, paths) -> None:
        if paths:
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
        raw = self._redis.get(scan_state_key(scan_key))
        return json.loads(raw) if raw else None

    def recent(self, session: str, count: int = 20) -> list[dict]:
        keys = [k.decode() for k in self._redis.zrevrange(recent_key(session), 0, count - 1)]
        states = [self.scan(k) for k in keys]
        return [s for s in states if s]

    def open_files(self, session: str) -> set[str]:
        return {p.decode() for p in self._redis.smembers(open_files_key(session))}

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
