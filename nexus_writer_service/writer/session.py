"""Listening to one BLISS session and writing each of its scans concurrently.

Scans overlap (sequences and their children, scans run back to back while the
previous one is finalised) and each waits on Redis most of the time: each scan in
progress runs on a thread of a bounded pool, and only a few work at once
(``scheduler``: a scan waiting for Redis gives its working slot back). Threads
rather than gevent, because h5py calls block in C and would stall a gevent loop
anyway. Finished scans are remembered by their small ``ScanRecord`` only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict

import redis

from ..io.files import FileRegistry
from ..transport import blissdata_api
from ..transport.blissdata_api import NoScanAvailable, ScanLoadError
from ..transport.connection import connect, redact_url
from .. import __version__
from ..transport.scans import ScanSource, scans_since
from ..states import FAILED, FINAL_STATES
from ..transport.status import SessionTaken, StatusPublisher, StatusReader
from .config import WriterConfig
from .paths import check_session_name, check_template
from . import storage
from .salvage import NoRoomToRebuild, not_ours, salvage
from ..records import ScanRecord
from .scan import ScanWriter
from .scheduler import ScanPool, Slots

_logger = logging.getLogger("nexus_writer_service")


class SessionWriter:
    #: states of this many recent scans are kept (``scans``, the stop's log)
    KEEP_STATES = 1000

    def __init__(self, session: str, redis_url: str, config: WriterConfig | None = None,
                 logger: logging.Logger = _logger):
        self.session = check_session_name(session)
        self.redis_url = redis_url
        self.config = config or WriterConfig()
        check_template(self.config.default_path_template, self.config.base_path)
        self.log = logger
        #: (made below, once the writer can be told its claim is lost)
        self.status: StatusPublisher
        self.files = FileRegistry(lock_timeout=self.config.lock_timeout,
                                  on_open=lambda path: self.status.file_opening(path),
                                  on_close=lambda path: self.status.file_closed(path),
                                  allowed_roots=self.config.path_policy().roots,
                                  strict=self.config.path_policy().strict)
        self._stop = threading.Event()
        self._ready = threading.Event()
        #: set when another writer took the session over, or this one must restart (HDF5
        #: failed a write): every scan stops writing at once, the next writer resumes them
        self._superseded = threading.Event()
        #: why this writer stopped to be started again in place (``apps.session_writer``)
        self.restart_reason: str | None = None
        #: what is known of recent scans (small: never a writer, its scan_info or datasets)
        self._states: OrderedDict[str, ScanRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = Slots(self.config.max_active_scans)
        self._pool = ScanPool(self._run_writer, self.config.max_scan_threads, name=f"scan-{self.session}")
        # the device answers BLISS with the writer's own path rule: the heartbeat carries it
        self.status = StatusPublisher(redis_url, session, __version__, on_lost=self._claim_lost,
                                      paths=self.config.path_policy().to_dict())

    # -- control -----------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once the writer listens: scans published from then on are written. The
        in-process harness of the tests waits on it before publishing."""
        return self._ready.wait(timeout)

    @property
    def scans(self) -> dict[str, ScanRecord]:
        with self._lock:
            return dict(self._states)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every scan seen so far is finished."""
        return self._pool.wait_idle(timeout)

    # -- main loop ---------------------------------------------------------
    def run(self) -> None:
        """Listen until ``stop()``; SessionTaken if another live writer holds the session."""
        ds, since, down, warned = None, None, False, 0.0
        where = redact_url(self.redis_url)
        try:
            while not self._stop.is_set():
                try:
                    if ds is None:
                        ds = connect(self.redis_url)
                        if not self.status.claimed:
                            self.status.start()  # one writer per session: SessionTaken
                        if since is None:
                            since = self._recover(ds)
                            self.log.info("[%s] listening for scans on %s (%s; blissdata %s)", self.session,
                                          where, self._where_files_go(), blissdata_api.VERSION)
                            if not blissdata_api.supported():
                                self.log.warning("[%s] %s", self.session, blissdata_api.describe())
                        self._ready.set()
                        if down:
                            self.log.warning("[%s] Redis is back (%s)", self.session, where)
                            down = False
                    try:
                        since, key = ds.get_next_scan(since=since, block=True, timeout=0.5)
                    except NoScanAvailable:
                        continue
                    self._dispatch(ds, key)
                except SessionTaken:
                    raise
                except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                    now = time.monotonic()
                    if not down or now - warned >= self.config.redis_warning_period:
                        # repeated while it lasts: a writer waiting silently looks like a dead one
                        self.log.warning("[%s] Redis unreachable at %s (%s): retrying", self.session,
                                         where, e)
                        down, warned = True, now
                    ds = None
                    self._stop.wait(1.0)
                except Exception:  # the listener itself must survive anything one scan does
                    self.log.exception("[%s] unexpected error while listening", self.session)
                    self._stop.wait(1.0)
        except SessionTaken as exc:
            self.log.error("[%s] %s", self.session, exc)
            raise
        self.log.info("[%s] writer stopping: waiting for running scans", self.session)
        self.wait_idle(timeout=self.config.read_timeout * 10)
        if not self._superseded.is_set():  # else each scan said it was left to the new writer
            self._log_unfinished()
        self.status.stop()
        self.log.info("[%s] writer stopped", self.session)

    def _where_files_go(self) -> str:
        roots = ", ".join(self.config.roots())
        if self.config.allowed_roots:
            return f"files only under {roots}"
        return f"files under {roots}, or where BLISS names them outside system folders"

    def _log_unfinished(self) -> None:
        """Name the scans a stop leaves half-written (the next start resumes them)."""
        with self._lock:
            left = [state for state in self._states.values() if state.status not in FINAL_STATES]
        if not left:
            return
        described = ", ".join(
            f"{s.number} {s.name} ({s.status}, {max(s.written.values(), default=0)} points"
            f"{' in ' + s.file if s.file else ''})" for s in left[:20])
        more = f" and {len(left) - 20} more" if len(left) > 20 else ""
        self.log.warning("[%s] stopped with %d scan(s) unfinished, resumed by the next start: %s%s",
                         self.session, len(left), described, more)

    def _successor(self) -> str:
        """Who goes on with a scan this writer stops (``ScanWriter``, hand-over)."""
        if self.restart_reason:
            return "this writer, restarted"
        return "the writer that took over the session"

    def _claim_lost(self, holder: dict) -> None:
        """Another writer holds the session now (ours expired): two must never write it.

        The new writer resumes our unfinished scans from their files (crash recovery), so
        ours stop at once, not when their scans end: they keep what they flushed and write,
        and publish, nothing more (``ScanWriter``: ``superseded``).
        """
        self.log.error("[%s] another writer took the session (pid %s on %s): stopping", self.session,
                       holder.get("pid", "?"), holder.get("host", "?"))
        self._superseded.set()
        self.stop()

    def _poisoned(self, reason: str) -> None:
        """A write HDF5 could not do: stop every scan between steps and restart the process.

        After such a failure HDF5 keeps ids whose file it freed, and any later link move or
        delete, in any file, walks over them: the process would crash at the next scan.
        """
        if self.restart_reason is None:
            self.restart_reason = (f"{reason}; HDF5's state in this process cannot be trusted after it: "
                                   "the scans in progress are resumed from Redis")
            self.log.error("[%s] %s", self.session, self.restart_reason)
            self._superseded.set()
            self.stop()

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
                                if isinstance(s.get("file"), str) and s.get("status") not in FINAL_STATES}
        rewrite: set[str] = set()
        for path in sorted(suspects):
            if not isinstance(path, str) or "\0" in path or not path.startswith("/"):
                continue
            if os.path.lexists(path):
                refused = not_ours(path, self.config.path_policy().roots, self.config.path_policy().strict)
                if refused:  # the list comes from Redis: never rename what is not ours
                    self.log.warning("[%s] %s left open by a previous writer is not checked: it %s",
                                     self.session, path, refused)
                    continue
            # scans that failed writing it (disk full): their entries say FAILED in the rebuilt file
            failed: list[tuple[list, dict, str]] = [(s.get("entries") or [], {}, s.get("error") or "") for s in states.values()
                      if s.get("file") == path and s.get("status") == FAILED and s.get("entries")]
            try:
                kept = salvage(path, self.log, reserve_mb=self.config.required_disk_space)
            except NoRoomToRebuild as exc:  # checked again by its scans once there is room
                self.log.warning("[%s] %s", self.session, exc)
                self.files.suspects.add(path)
                self.files.failed_entries.setdefault(path, []).extend(failed)
                rewrite |= {key for key, s in states.items() if s.get("file") == path}
                continue
            except Exception as exc:  # leave it to the scans themselves (they fail clearly)
                self.log.error("[%s] could not check %s after a crash: %s", self.session, path, exc)
                continue
            if kept is None:  # whole: the failed entries are marked when the file is next opened
                self.files.failed_entries.setdefault(path, []).extend(failed)
            else:
                for names, info, error in failed:
                    try:
                        storage.mark_failed(self.files, path, [n for n in names if n not in kept], info, error)
                    except Exception as exc:
                        self.log.error("[%s] could not mark failed entries in %s: %s", self.session, path, exc)
                rewrite |= {key for key, s in states.items()
                            if s.get("file") == path and not set(s.get("entries") or ["?"]) <= kept}
        self.status.forget_open_files(left_open)
        return rewrite

    def _run_writer(self, writer: ScanWriter) -> None:
        """One scan, on a pool thread, holding a working slot while it works (``scheduler``)."""
        writer.slot = self._slots.slot()
        writer.slot.take()
        try:
            writer.run()
        finally:
            writer.slot.give()

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
                            publish=self.status.scan, superseded=self._superseded,
                            confirm_claim=self.status.renew, on_poisoned=self._poisoned,
                            successor=self._successor, stop_requested=self.status.stop_requested)
        writer.state.name, writer.state.number = scan.name, scan.number
        self.status.scan(writer.state)  # PENDING: BLISS can see the writer took it
        with self._lock:
            self._states[key] = writer.state
            while len(self._states) > self.KEEP_STATES:  # the status of recent scans only
                self._states.popitem(last=False)
        self._pool.submit(writer)
