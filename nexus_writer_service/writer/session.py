"""Listening to one BLISS session and writing each of its scans concurrently.

Each scan gets its own thread: scans overlap (sequences and their children,
scans run back to back while the previous one is finalised) and each waits on
Redis most of the time. Threads rather than gevent, because h5py calls block in
C and would stall a gevent loop anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

import redis
from blissdata.exceptions import NoScanAvailable, ScanLoadError

from ..io.files import FileRegistry
from ..transport.connection import connect
from .. import __version__
from ..transport.scans import ScanSource, scans_since
from ..states import FINAL_STATES
from ..transport.status import StatusPublisher, StatusReader
from .config import WriterConfig
from .salvage import salvage
from .scan import ScanState, ScanWriter

_logger = logging.getLogger("nexus_writer_service")


class SessionWriter:
    def __init__(self, session: str, redis_url: str, config: WriterConfig | None = None,
                 logger: logging.Logger = _logger):
        self.session = session
        self.redis_url = redis_url
        self.config = config or WriterConfig()
        self.log = logger
        self.files = FileRegistry(lock_timeout=self.config.lock_timeout,
                                  on_open=lambda path: self.status.file_opening(path),
                                  on_close=lambda path: self.status.file_closed(path))
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._writers: dict[str, ScanWriter] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, self.config.max_active_scans))
        self.status = StatusPublisher(redis_url, session, __version__)

    # -- control -----------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once the writer listens: scans published from then on are written."""
        return self._ready.wait(timeout)

    @property
    def scans(self) -> dict[str, ScanState]:
        with self._lock:
            return {k: w.state for k, w in self._writers.items()}

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every scan seen so far is finished."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads.values())

    # -- main loop ---------------------------------------------------------
    def run(self) -> None:
        ds, since, down = None, None, False
        self.status.start()
        while not self._stop.is_set():
            try:
                if ds is None:
                    ds = connect(self.redis_url)
                    if since is None:
                        since = self._recover(ds)
                        self.log.info("[%s] listening for scans on %s", self.session, self.redis_url)
                    self._ready.set()
                    if down:
                        self.log.warning("[%s] Redis is back", self.session)
                        down = False
                try:
                    since, key = ds.get_next_scan(since=since, block=True, timeout=0.5)
                except NoScanAvailable:
                    continue
                self._dispatch(ds, key)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                if not down:
                    self.log.warning("[%s] Redis unreachable (%s): retrying", self.session, e)
                    down = True
                ds = None
                self._stop.wait(1.0)
            except Exception:  # the listener itself must survive anything one scan does
                self.log.exception("[%s] unexpected error while listening", self.session)
                self._stop.wait(1.0)
        self.log.info("[%s] writer stopping: waiting for running scans", self.session)
        self.wait_idle(timeout=self.config.read_timeout * 10)
        self.status.stop()
        self.log.info("[%s] writer stopped", self.session)

    def _recover(self, ds) -> str:
        """Write the session's recent scans that no writer finished; returns where to go on from.

        Listening goes on from the newest scan the look-back saw, so nothing
        created in between is missed.
        """
        timetag, keys = scans_since(ds, self.config.recover_window)
        reader = StatusReader(self.redis_url)
        states = {key: reader.scan(key) or {} for key in keys}
        rewrite = self._salvage_files(states, reader.open_files(self.session))
        todo = []
        for key in keys:
            if states[key].get("status") in FINAL_STATES and key not in rewrite:
                continue
            try:
                scan = ds.load_scan(key)
            except ScanLoadError:
                continue  # deleted or expired meanwhile
            if scan.session == self.session:
                todo.append((key, scan))
        if todo:
            self.log.info("[%s] recovering %d scan(s) not finished by a previous writer", self.session, len(todo))
        for key, scan in todo:  # in creation order
            self._dispatch(ds, key, scan)
        return timetag

    def _salvage_files(self, states: dict[str, dict], left_open: set[str]) -> set[str]:
        """Files a killed writer had open, checked; keys of the scans to write again."""
        suspects = left_open | {s["file"] for s in states.values()
                                if s.get("file") and s.get("status") not in FINAL_STATES}
        rewrite: set[str] = set()
        for path in sorted(suspects):
            try:
                kept = salvage(path, self.log)
            except Exception as exc:  # leave it to the scans themselves (they fail clearly)
                self.log.error("[%s] could not check %s after a crash: %s", self.session, path, exc)
                continue
            if kept is not None:
                rewrite |= {key for key, s in states.items()
                            if s.get("file") == path and not set(s.get("entries") or ["?"]) <= kept}
        self.status.forget_open_files(left_open)
        return rewrite

    def _run_writer(self, writer: ScanWriter) -> None:
        """At most ``max_active_scans`` scans write at once; the others wait (PENDING).

        A burst of scans (a writer catching up, hundreds of short scans) would otherwise
        be hundreds of threads fighting for the GIL and h5py's lock, each slower.
        """
        with self._slots:
            writer.run()

    def _dispatch(self, ds, key: str, scan=None) -> None:
        """``scan``: already loaded by the caller (recovery)."""
        try:
            if scan is None:
                scan = ds.load_scan(key)
        except ScanLoadError as e:
            self.log.warning("[%s] cannot load scan %s: %s", self.session, key, e)
            return
        if scan.session != self.session:
            return
        writer = ScanWriter(ScanSource(ds, key, loaded=scan), self.files, self.config, self.log, self.session,
                            publish=self.status.scan)
        writer.state.name, writer.state.number = scan.name, scan.number
        self.status.scan(writer.state)  # PENDING: BLISS can see the writer took it
        thread = threading.Thread(target=self._run_writer, args=(writer,), name=f"scan-{scan.number}",
                                  daemon=True)
        with self._lock:
            self._writers[key] = writer
            self._threads[key] = thread
            while len(self._writers) > 1000:  # keep the status of recent scans only
                old, _ = self._writers.popitem(last=False)
                if not self._threads[old].is_alive():
                    self._threads.pop(old)
        thread.start()

