"""Writing one scan: from its Redis description to finished NeXus entries.

The steps follow the scan's life: wait until PREPARED (streams exist), create
every entry with empty datasets, append data as it arrives, then add what is
only known at the end. Whatever happens to this scan is logged and recorded in
the entry's ``writer`` note; it never propagates to other scans.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from ..h5map import ExternalLink, Group

from .. import kinds
from ..compression import preset as filter_preset
from ..descriptions import ScanDescription
from ..records import NOTE, NOTE_GROUP, ScanRecord
from ..io import entries, inspect
from ..io.arrays import ArraySpec, StorageOptions
from ..io.files import FileChangedError, FileHandle, FileRegistry, set_publisher
from ..io.space import MB, no_space_message, storage_errno
from ..io.tree import TreeWriter, set_attributes
from ..mapping import beamline, h5maps, layout
from ..mapping.scaninfo import clean as clean_info
from ..mapping.layout import ScanPlan
from ..metadata.config import BeamlineConfig, ConfigError, merged
from ..metadata.config import from_dict as config_from_dict
from ..states import FAILED, FINAL_STATES, INCOMPLETE, SKIPPED, SUCCEEDED, WRITING
from ..mapping.nexus import group, link
from dataclasses import replace
from datetime import datetime, timezone
from ..transport.blissdata_api import EndOfStream
from ..transport.scans import CLOSED, PREPARED, REDIS_DOWN, ScanSource
from .config import WriterConfig
from .masterfiles import MasterLink, master_links, update_master_files
from .paths import scan_file, target_file
from . import storage
from .salvage import NoRoomToRebuild, readable_in_place
from .scheduler import NO_SLOT
from .verdict import Facts, verdict


#: reserved on the disk beyond what a write needs: the metadata HDF5 writes with it
RESERVE_BYTES = 1 << 20


class EntryExistsError(RuntimeError):
    pass


class AlreadyWritten(Exception):
    """This scan's entries were finished by an earlier run of the writer."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


class _GaveUp(Exception):
    """The storage never gave room for what the scan holds: it ends, its data in Redis."""


class Failed(Exception):
    """The scan fails for a reason stated in full (no exception type in front of it)."""


class Superseded(Exception):
    """Another writer took the session over: this scan is its now (it resumes it from the file)."""


class ScanLogger(logging.LoggerAdapter):
    """Prefixes ``[session] [scan]``; the prefix is data, never part of the format string.

    Scan and session names come from users: a name with ``%s`` must not be read by
    logging's ``msg % args`` (it would lose the line: "--- Logging error ---").
    """

    def log(self, level, msg, *args, **kwargs):
        if self.isEnabledFor(level):
            prefix = f"[{self.extra['session']}] [{self.extra['scan']}] "
            if args:  # logging applies ``%`` only when there are arguments
                prefix = prefix.replace("%", "%%")
            self.logger.log(level, prefix + str(msg), *args, **kwargs)


class ScanWriter:
    def __init__(self, source: ScanSource, files: FileRegistry, config: WriterConfig,
                 logger: logging.Logger, session: str = "", publish=None,
                 superseded: threading.Event | None = None, confirm_claim=None, on_poisoned=None,
                 successor=None, stop_requested=None):
        self.source = source
        self.files = files
        self.config = config
        self.state = ScanRecord(source.key)
        self.log = ScanLogger(logger, {"session": session, "scan": source.key})
        #: called with the ScanRecord at every change (completeness protocol)
        self._on_change = publish
        self._last_publish = 0.0
        #: the session's working slot (``scheduler``): given back while waiting for Redis
        self.slot = NO_SLOT
        #: set when another writer took the session: stop writing and publishing at once
        self._superseded = superseded or threading.Event()
        #: asks Redis now whether the session is still ours (sets ``superseded`` if not)
        self._confirm_claim = confirm_claim or (lambda: True)
        #: asks Redis whether someone wants this scan stopped (the Tango command stop_scan)
        self._stop_requested = stop_requested or (lambda key: False)
        #: stopped on request: finish with what was written, wait for nothing more
        self._stopped = False
        #: told when HDF5 failed a write: the process restarts (see ``SessionWriter._poisoned``)
        self._on_poisoned = on_poisoned or (lambda reason: None)
        #: who goes on with this scan when it stops unfinished
        self._successor = successor or (lambda: "the writer that took over the session")
        #: how this scan waits for its disk and for readers' locks (``storage``)
        self._storage = storage.Waiter(
            config.space_rule(), config.storage_wait, config.storage_check_period, self._warn,
            pause=self._pause, resume=lambda: self.slot.take(), available=self._data_in_redis)
        #: the file changed under the writer and was written again: never SUCCEEDED then
        self._rewritten = ""
        self._reset()

    def _reset(self) -> None:
        """What one attempt at writing the scan holds (a file taken away starts a new one)."""
        self._handle: FileHandle | None = None
        self._arrays: dict = {}
        self._drained = False
        self._lost: dict[str, int] = {}
        #: streams whose data could not be read as described: why
        self._broken: dict[str, str] = {}
        self._skip: dict[str, int] = {}
        self._plan: ScanPlan | None = None
        self._desc: ScanDescription | None = None
        #: the kind of every stream of the scan (``kinds``), by stream name
        self._kinds: dict[str, kinds.StreamKind] = {}
        self._last_live = 0.0
        #: items written while the scan ran (growing views), replaced by the final ones
        self._live_paths: set[str] = set()
        #: the beamline configuration in force for this scan (writer's file + the session's)
        self._beamline: BeamlineConfig | None = None
        #: this scan wrote since its last flush (the handle also limits flushes, per file)
        self._dirty = False
        self._last_space_check = 0.0
        #: streams whose dataset only readers with a filter plugin decode (opt-in presets)
        self._needs_plugin: frozenset = frozenset()
        #: warnings of the completeness verdict already said (``_judge``)
        self._judged = 0
        #: BLISS's map of our file at PREPARING (``h5maps``), and the tree written at the start
        self._start_map: Group | None = None
        #: the file BLISS's maps are looked up for (where the scan's entries are)
        self._map_path = ""
        self._start_tree: Group | None = None
        #: conflicts with BLISS's map already said
        self._conflicts: list[str] = []
        self.state.entries = []

    def _pause(self) -> None:
        """Before waiting for the storage: give the slot back, never wait for a lost session."""
        self._check_claim()
        self.slot.give()

    def _data_in_redis(self) -> bool:
        try:
            return self.source.data_available()
        except Exception:  # Redis down: the data may well still be there
            return True

    # -- public ------------------------------------------------------------
    def run(self) -> ScanRecord:
        try:
            attempt = 0
            while True:
                try:
                    self._run()
                    break
                except FileChangedError as changed:
                    attempt += 1
                    if not self._file_changed(changed, attempt):
                        break
        except AlreadyWritten as done:
            self.state.status = done.status
            self.log.info("%s: nothing to do", done)
        except Superseded:
            self._hand_over()
        except storage.GivenUp as exc:  # nothing is broken: the storage kept the data out
            self.state.status = INCOMPLETE
            self.state.error = str(exc.strerror or exc)
            self.log.warning("INCOMPLETE: %s", self.state.error)
        except Exception as e:  # one scan's failure must not reach the session writer
            self.slot.take()  # marking, quarantine, rebuilding: file work
            if self._superseded.is_set():  # whatever failed, the file is the new writer's now
                self.log.debug("error after the session was taken over", exc_info=True)
                self._hand_over()
                return self.state
            self.state.status = FAILED
            self.state.error = self._reason(e)
            self.log.error("FAILED: %s", self.state.error, exc_info=self.log.isEnabledFor(logging.DEBUG) or bool(os.environ.get("NXW_TRACEBACKS")))
            if self._handle is None:
                pass
            elif storage_errno(e) is not None or self.files.quarantine(self._handle, keep=self._arrays.values()):
                # the storage refused a write: whatever a flush now says (HDF5 may report
                # success with part of its cache unwritten), the handle is not trusted again
                self.files.quarantine(self._handle, keep=self._arrays.values(), force=True)
                self._after_failed_writes()
                if storage_errno(e) is not None:
                    self._publish()  # FAILED, before the writer stops publishing
                    self._on_poisoned(f"HDF5 could not write {self._handle.path} ({self.state.error.split(': ')[0]})")
            else:
                self._mark(FAILED)
        finally:
            if self.state.status in FINAL_STATES and self.state.ended is None:
                self.state.ended = time.time()
            self._close_file()
            self._publish()
            self.source.close()
        return self.state

    def _close_file(self) -> None:
        """Give the file back; the scan's datasets close with it, unless HDF5 can no longer
        write it: then nothing of it is closed again (h5py would crash the process)."""
        if self._handle is not None:
            self.slot.take()  # closing the file flushes it
            handle, arrays = self._handle, list(self._arrays.values())
            handle.writing.difference_update(self.state.entries)
            broken = handle in self.files.quarantined
            if not broken:
                with handle.lock:
                    for array in arrays:  # their open-dataset slots, at once
                        try:
                            array.close()  # what it holds in memory goes into the file first
                        except Exception as exc:
                            self.log.error("closing a dataset of %s failed: %s", handle.path, exc)
                            broken = True
                            break
            if broken:
                for array in arrays:  # what they hold in memory is in Redis still: dropped
                    array.abandon()
                self.files.quarantine(handle, keep=arrays, force=True)
            self.files.release(handle)
            self._handle = None
        # the session keeps finished writers for their state: not their datasets and buffers
        self._arrays = {}

    def _reason(self, exc: Exception) -> str:
        """The error as the scan states it: a refused write names the disk and its free space."""
        if isinstance(exc, Failed):
            return str(exc)
        text = f"{type(exc).__name__}: {exc}"
        number = storage_errno(exc)
        path = self._handle.path if self._handle is not None else self.state.file
        if number in (28, 122) and path:  # ENOSPC, EDQUOT
            return f"{no_space_message(path)}: {text}"
        if number == 27:
            return f"file too large for the file system ({path}): {text}"
        if number == 30:
            return f"the file system of {path} is read-only: {text}"
        return text

    def _file_changed(self, changed: FileChangedError, attempt: int) -> bool:
        """The file at the path is not the one written: True to write the scan again from Redis.

        Nothing more goes into the old file (a truncated one would be damaged further):
        its handle is kept, never closed. Entries finished only in it are named as lost.
        Read-only: the scan is FAILED with the reason (the data policy closed the dataset).
        """
        change, handle = changed.change, self._handle
        self.slot.take()
        path = handle.path if handle is not None else self.state.file
        if change.kind == "read-only":  # the file is whole: said in it, then closed as usual
            error = Failed(f"{path}: {change.message}: nothing more written "
                           f"({max(self._written().values(), default=0)} points in the file)")
            self.state.error = self._reason(error)
            self._mark(FAILED)
            self._close_file()
            raise error
        if handle is not None:
            lost = self._finished_elsewhere(handle)
            handle.writing.difference_update(self.state.entries)
            self.files.quarantine(handle, keep=self._arrays.values(), force=True)
            self.files.release(handle)
            self._handle = None
            if lost:
                self._warn(f"{path}: entries {', '.join(lost)} were finished in the lost file and are gone with it")
        self._rewritten = change.message
        if attempt > 3:
            raise OSError(changed.errno, f"{path}: {change.message} (again, {attempt} times): given up")
        self._warn(f"{path}: {change.message}: the scan is written again from what Redis holds")
        self._reset()
        return True

    def _finished_elsewhere(self, handle: FileHandle) -> list[str]:
        """Finished entries of the lost file other than this scan's (reported once per file)."""
        if handle.lost_reported:
            return []
        handle.lost_reported = True
        try:  # the entry names are in HDF5's cache even when the file is cut
            with handle.lock:
                names = list(handle.h5)
        except Exception:
            return ["(which ones could not be read)"]
        return [n for n in names if n not in handle.writing and not n.startswith(entries.STAGING)]

    # -- steps -------------------------------------------------------------
    def _check_claim(self) -> None:
        """Between steps (never inside one: nothing is left half-written)."""
        if self._superseded.is_set():
            raise Superseded()

    def _hand_over(self) -> None:
        """What this writer wrote stays, flushed; the writer that took over goes on from it."""
        points = max(self._written().values(), default=0) if self._arrays else 0
        if self._handle is not None:
            self.slot.take()
            try:
                self._handle.flush(before=self._sync_arrays)
            except Exception as exc:  # the new writer checks the file like one a crash left
                self.log.error("could not flush %s before leaving it: %s", self._handle.path, exc)
        where = f" ({points} points in {self.state.file})" if self.state.file else ""
        self.log.warning("left to %s%s: not finished here", self._successor(), where)

    def _wait_for(self, state, timeout: float) -> bool:
        """``source.wait`` in steps of at most a second, stopped when the session is taken over."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_claim()
            remaining = deadline - time.monotonic()
            if self.source.wait(state, max(0.0, min(remaining, 1.0))):
                return True
            if remaining <= 1.0:
                return False

    def _run(self) -> None:
        src = self.source
        self._check_claim()  # queued while the session was taken over
        src.load()
        self.state.name, self.state.number = src.scan.name, src.scan.number
        self.state.expected = _announced_points(src.scan.info)
        self.log.extra["scan"] = f"{src.scan.number} {src.scan.name}"
        if src.scan.state < PREPARED:
            self.slot.give()  # waiting for the publisher is no work
        prepared = self._wait_for(PREPARED, self.config.prepare_timeout)
        self.slot.take()
        if not prepared:
            raise TimeoutError(f"scan not prepared after {self.config.prepare_timeout:.0f} s")
        desc = self._desc = kinds.classify(src.description())
        desc.info, problems = clean_info(desc.info)
        for problem in problems:
            self._warn(problem)
        self.state.expected = _announced_points(desc.info)  # as prepared (may differ from created)
        if desc.info.get("save") is False:
            self.state.status = SKIPPED
            self.log.info("not saved (save=False): nothing written")
            return
        dataset_file, from_template = target_file(desc, self.config.base_path, self.config.default_path_template)
        # BLISS's separate_scan_files: the entries in the scan's own file, linked from the dataset's
        path = scan_file(desc.info, dataset_file) or dataset_file
        self.state.file = path
        self._beamline = self._beamline_config(desc.info)
        plan = self._plan = layout.plan_scan(desc, self._beamline)
        self._map_path = path
        self._start_map = self._file_map(desc.info)
        # the scan's own handlers, not the planner's: those answered questions about the
        # descriptions (pure mapping); these hold what the scan's events tell while it runs
        self._kinds = {s.name: kinds.handler(s) for s in desc.streams}
        self.state.warnings.extend(plan.warnings)
        for w in plan.warnings:
            self.log.warning(w)
        self._check_claim()
        self._create(path, plan, desc)
        self._link_master_files(desc, dataset_file, path)
        where = " (no file named by BLISS: default template)" if from_template else ""
        self.log.info("writing %s in %s%s", ", ".join(self.state.entries), path, where)
        self.state.status = WRITING
        self.state.started = time.time()
        self._publish()
        complete = self._stream()
        self._finish(complete)

    def _beamline_config(self, info: dict) -> BeamlineConfig:
        """The writer's file, with the session's own configuration (from Beacon) over it."""
        session_layer = (info.get("nexuswriter") or {}).get("configuration")
        if isinstance(session_layer, dict):
            try:
                return config_from_dict(merged(self.config.beamline, session_layer),
                                        "the session's configuration (scan_info nexuswriter.configuration)")
            except ConfigError as exc:
                self._warn(f"{exc}: ignored, using the writer's own configuration only")
        return config_from_dict(self.config.beamline, self.config.beamline_source or "writer configuration")

    def _create(self, path: str, plan: ScanPlan, desc: ScanDescription) -> None:
        self._handle = self._storage.open_when_free(self.files, path, self.log, self.config.required_disk_space)
        if not self._make_room(0.0):  # the start tree's blocks
            raise storage.NoRoom(28, "no room for the scan's entries: nothing written, the data stay in Redis")
        compression = self.config.compression or None
        expected = self.state.expected or 0
        # BLISS's writer_options (chunks, filter) for this scan, under the configuration's choices
        chunking, problems = StorageOptions.from_writer_options(desc.info.get("writer_options"))
        for problem in problems:
            self._warn(problem)
        specs = {c.stream: ArraySpec(c.dtype, c.point_shape, c.fill_value,
                                     beamline.channel_compression(c, self._beamline, chunking.compression,
                                                                  compression or ""),
                                     expected, chunking)
                 for c in plan.streamed}
        self._needs_plugin = frozenset(name for name, spec in specs.items()
                                       if filter_preset(spec.filter).plugin)
        with self._handle.lock:
            h5 = self._handle.h5
            set_publisher(h5, desc.info)
            existing = [e.name for e in plan.entries if entries.has(h5, e.name)]
            resume = bool(existing) and self._own_unfinished(h5, existing, desc.key, path)
            writer = TreeWriter(specs, resume=resume)
            root = self._with_map({e.name: layout.start_tree(desc, e) for e in plan.entries}, self._start_map,
                                  final=False)
            self._start_tree = root
            for entry in plan.entries:
                tree = root.children[entry.name]
                if entries.has(h5, entry.name):  # resumed: complete what is missing
                    writer.write(h5, entry.name, tree)
                else:
                    entries.create(h5, entry.name, lambda parent, name: writer.write(parent, name, tree))
                self.state.entries.append(entry.name)
            if root.attributes:  # BLISS's map's for the file's root
                set_attributes(h5, root.attributes)
            writer.finish_links()
            self._handle.writing.update(self.state.entries)
            self._arrays = writer.streams
            # points already in the file (resumed entries) are not appended twice
            self._skip = {name: a.length for name, a in self._arrays.items() if a.length}
            # points a previous run grew over (lost) stay lost: the file says how many
            self._lost = {name: a.missing for name, a in self._arrays.items() if a.missing}
            self._note_warnings(writer.warnings)
            if resume:
                self.log.info("resuming %s (%d points already in the file)", ", ".join(existing),
                              max(self._skip.values(), default=0))
        # visible to readers with the next periodic flush (back-to-back scans share the file)
        self._dirty = not self._handle.flush(self.config.flush_period, before=self._sync_arrays)

    def _own_unfinished(self, h5, names: list[str], key: str, path: str) -> bool:
        """True if these entries are this scan's, left unfinished by a writer that died."""
        for name in names:
            note = entries.note(h5, name)
            if note is None or note[0] != key:
                raise EntryExistsError(f"entry {name} already exists in {path}: not overwritten")
            status = note[1]
            if status in FINAL_STATES:
                raise AlreadyWritten(f"entry {name} was already written ({status})", status)
        return True

    def _link_master_files(self, desc: ScanDescription, dataset_file: str, path: str) -> None:
        """The scan appears in the files that link it as it starts: the dataset file when the
        scan has its own (separate scan files), the ESRF data policy's collection and proposal
        files."""
        links = master_links(desc, dataset_file, self.state.entries)
        if path != dataset_file:
            links = [MasterLink(dataset_file, entry, path, entry) for entry in self.state.entries] + links
        if not links:
            return
        try:
            for warning in update_master_files(self.files, links):
                self._warn(warning)
        except Exception as e:  # the scan's own file is fine: say it, go on
            self._warn(f"master files not updated: {type(e).__name__}: {e}")

    def _stream(self) -> bool:
        """Append data until every stream is sealed and read; False if given up."""
        src = self.source
        events = [n for n, k in self._kinds.items() if k.follows and not k.appends]
        src.follow(list(self._arrays) + events, {n for n in events if self._kinds[n].cumulative})
        # a slow scan (long count time) is not a stalled one
        count_time = self._desc.info.get("count_time")
        stall = max(self.config.stall_timeout,
                    10 * count_time if isinstance(count_time, (int, float)) else 0)
        last_progress = time.monotonic()
        redis_down = False
        has_live = bool(self._plan.referenced)  # views that grow while the scan runs
        next_stop_check = 0.0
        while True:
            self._check_claim()
            if not self._room_to_go_on():
                return False
            if time.monotonic() >= next_stop_check:  # one Redis call a second at most
                next_stop_check = time.monotonic() + 1.0
                if self._stop_requested(src.key):
                    self._stopped = True
                    self.slot.take()
                    self._warn("stopped on request (stop_scan): the rest of the scan is not written")
                    return False
            try:
                batches = src.read(timeout=self.config.read_timeout)
                if redis_down:
                    self.log.warning("Redis is back: reading again")
                    redis_down = False
                    # ours expired if the outage outlasted it: ask before appending anything
                    self._confirm_claim()
                self._check_claim()  # points read after a takeover are the new writer's
            except EndOfStream:
                self._drained = True  # every stream sealed and read to its end
                self.slot.take()
                return True
            except REDIS_DOWN as e:
                if not redis_down:
                    self.log.warning("Redis unreachable (%s): retrying", e)
                    redis_down = True
                batches = {}
                time.sleep(min(1.0, self.config.read_timeout))
            live_due = has_live and time.monotonic() - self._last_live > self.config.flush_period
            if batches or live_due or self._dirty:
                # file work, even for a scan that got nothing new: live views read detector
                # files and rewrite items, a flush writes every dirty object of the file. A
                # scan that wrote nothing since its last flush has nothing to flush (the
                # file's other scans flush their own points): a hung one takes no slot
                self.slot.take()
            if batches:
                last_progress = time.monotonic()
                try:  # a batch the disk has no room for now is written a chunk at a time
                    self._append(batches, piecewise=not self._room_for(batches))
                except _GaveUp:
                    return False
                self._dirty = True
            self._check_claim()
            if live_due and self._write_live():
                self._dirty = True
            if self._dirty and self._handle.flush(self.config.flush_period, before=self._sync_arrays):
                self._dirty = False  # else flushed too recently: asked again next time
            if not batches:
                self.slot.give()  # waiting for Redis now (a hung scan must not hold a slot)
            if time.monotonic() - self._last_publish > 1.0:  # progress, at most once a second
                written = self._written()
                if written != self.state.written:
                    self.state.written = written
                    self._publish()
            if not batches:
                try:
                    if src.poll():
                        last_progress = time.monotonic()
                except REDIS_DOWN:
                    pass
                if src.closed and not batches:
                    # sealed streams end the cursors; a closed scan with unsealed ones is over too
                    if time.monotonic() - last_progress > self.config.read_timeout * 4:
                        self.slot.take()
                        return True
                if time.monotonic() - last_progress > stall:
                    self.slot.take()
                    self._warn(f"no data and no state change for {stall:.0f} s: given up")
                    return False

    def _room_to_go_on(self) -> bool:
        """Checked between reads (cheap, at most every half second): below the required free
        space the scan stops reading (its data wait in Redis) until there is room."""
        now = time.monotonic()
        if now - self._last_space_check < min(self.config.storage_check_period, 0.5):
            return True
        self._last_space_check = now
        return self._make_room(0.0)

    def _room_for(self, batches: dict) -> bool:
        """There is room now for these points and the chunks HDF5 allocates whole for them
        (reserved on the disk); False: they go in pieces, each waiting for its room."""
        rule = self.config.space_rule()
        if rule.required_mb <= 0:
            return True
        margin = 0
        for name, batch in batches.items():
            array = self._arrays.get(name)
            if array is not None and batch.data is not None:
                margin += getattr(batch.data, "nbytes", 0) + array.chunk_bytes
        return (not rule.shortage(self._handle.path, margin / MB)
                and self._handle.reserve(margin + RESERVE_BYTES))

    def _make_room(self, margin_mb: float) -> bool:
        """The free-space rule holds with ``margin_mb`` more written, and those blocks are
        reserved on the disk (``io.space.reserve``: no other process can take them before
        HDF5 writes). Else the scan flushes what it has (the rule's headroom is for that),
        gives its slot back and waits for room; False if it never came (given up)."""
        rule = self.config.space_rule()
        if rule.required_mb <= 0:  # the guard is off: HDF5 meets the disk itself
            return True
        path, need = self._handle.path, int(margin_mb * MB) + RESERVE_BYTES
        if not rule.shortage(path, margin_mb) and self._handle.reserve(need):
            return True
        self.slot.take()
        self._handle.flush(before=self._sync_arrays)
        self._dirty = False
        started = time.monotonic()
        while True:
            shortage = self._storage.room(path, margin_mb, started=started)
            if not shortage and self._handle.reserve(need):
                break
            waited = time.monotonic() - started
            if shortage or waited >= self.config.storage_wait:
                shortage = shortage or f"no room to reserve {need / MB:.1f} MB on {os.path.dirname(path)} (quota?)"
                self._warn(f"{shortage}: given up after {waited:.0f} s; "
                           f"{max(self._written().values(), default=0)} points written, the rest stay in Redis")
                return False
            time.sleep(self.config.storage_check_period)
        self.log.info("room on the disk again: writing goes on")
        return True

    def _sync_arrays(self) -> None:
        """What this scan's datasets hold in memory goes into the file (before a flush)."""
        for array in self._arrays.values():
            array.sync()

    def _point(self, name: str) -> int:
        array = self._arrays.get(name)
        return array.length if array is not None else 0

    def _written(self) -> dict[str, int]:
        """Points (frames, events) in the file so far, per stream."""
        written = {n: a.length for n, a in self._arrays.items()}
        for name, kind in self._kinds.items():
            if not kind.appends and kind.progress() is not None:
                written[name] = kind.progress()
        return written

    def _context(self, ch, info: dict, files: dict | None = None) -> kinds.Context:
        return kinds.Context(entry=ch.entry if ch else self._plan.entries[0].name, channel=ch,
                             file_dir=os.path.dirname(self.state.file), info=info, files=files or {})

    def _write_live(self) -> bool:
        """What kinds show while the scan runs (spectra saved by MOSCA so far); True if written."""
        self._last_live = time.monotonic()
        wrote = False
        for ch in self._plan.referenced:
            kind = self._kinds[ch.stream]
            nodes = kind.live(self._context(ch, self._desc.info, self._answers(kind.live_files_needed)))
            if not nodes:
                continue
            wrote = True
            with self._handle.lock:
                writer = TreeWriter()
                for path, node in nodes.items():
                    full = f"{ch.entry}/{path}"
                    parent, _, name = full.rpartition("/")
                    writer.write_at(self._handle.h5, parent, name, node, replace=True)
                    self._live_paths.add(full)  # the final tree replaces it
                writer.finish_links()
        return wrote

    def _append(self, batches: dict, piecewise: bool = False) -> None:
        with self._handle.lock:
            for name, batch in batches.items():
                if batch.error:
                    self._broken[name] = batch.error
                    self._warn(f"{name}: {batch.error}: not written from point {self._point(name)} on")
                    continue
                kind = self._kinds.get(name)
                if kind is not None and not kind.appends:
                    kind.on_events(batch.data if batch.data is not None else [], batch.lost)
                    continue
                array = self._arrays[name]
                batch = self._skip_written(name, batch)
                if batch.lost:
                    self._lost[name] = self._lost.get(name, 0) + batch.lost
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
            if not self._make_room((nbytes + array.chunk_bytes) / MB):
                raise _GaveUp()
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

    def _finish(self, streams_complete: bool) -> None:
        src, desc, plan = self.source, self._desc, self._plan
        if not src.closed:
            self.slot.give()
        closed = src.closed or (not self._stopped and self._wait_for(CLOSED, min(self.config.stall_timeout, 60.0)))
        self.slot.take()
        self._check_claim()
        info, problems = clean_info(src.info)
        for problem in problems:
            if problem not in self.state.warnings:
                self._warn(problem)
        if not info.get("end_time"):  # as start_time: the entry always says when it ended
            info["end_time"] = datetime.now(timezone.utc).astimezone().isoformat()
            self._warn("scan_info has no end_time: the writer's clock at the end is written")
        lengths = {name: a.length for name, a in self._arrays.items()}
        # streams read to their sealed end hold what was published: no need to ask again
        trusted = {n: v for n, v in lengths.items() if n not in self._broken}
        published = src.published_lengths(known=trusted if self._drained and not self._lost else None)
        self.state.written = dict(lengths)
        facts = Facts(closed=closed, stopped=self._stopped, complete=streams_complete, written=lengths,
                      published=published, lost=dict(self._lost), broken=set(self._broken),
                      planned=[(ch.stream, f"{ch.entry}/{ch.path}") for ch in plan.streamed],
                      known=set(self._kinds), rewritten=self._rewritten)
        self._judge(facts)  # what is wrong so far is said before the kinds and the disk are asked
        outcomes = self._outcomes(info)
        lengths = dict(lengths)
        for name, outcome in outcomes.items():
            lengths[name] = outcome.written
            self.state.written[name] = outcome.written
        facts = replace(facts, outcomes=outcomes)
        self._judge(facts)
        # how the scan ended and how far it got: what progress is measured against now
        self.state.end_reason = str(info["end_reason"]) if info.get("end_reason") else None
        counts = [published[n] if isinstance(published.get(n), int) and published[n] >= 0 else n_written
                  for n, n_written in self.state.written.items() if n not in outcomes]
        counts += [o.written + o.missing for o in outcomes.values()]
        self.state.published = max(counts, default=0)
        facts = replace(facts, no_room=not self._make_room(0.0))  # the final tree's blocks
        change = self._handle.check()  # before the final tree: never into a file taken away
        if change is not None and change.kind != "moved":
            raise FileChangedError(self._handle.path, change)
        if change is not None:
            facts = replace(facts, moved=(self._handle.path, change.message, change.new_path))
            self.state.file = change.new_path
        status = self._judge(facts)
        if plan.subscan_streams:
            self.slot.give()  # the children's entries are written meanwhile
        subscans = self._subscan_links() if plan.subscan_streams else None
        self.slot.take()
        self._check_claim()  # the final tree is written whole, or not at all
        with self._handle.lock:
            self._sync_arrays()  # every point in the file before the entry is finished
            h5 = self._handle.h5
            writer = TreeWriter()
            plotted = None
            #: entry -> its end_time node, written after everything else
            ends = {}
            trees = {}
            for entry in plan.entries:
                tree = trees[entry.name] = layout.final_tree(desc, entry, info, lengths, status, self.state.warnings,
                                                             self._beamline, outcomes, self._needs_plugin)
                if subscans is not None and subscans.children and entry is plan.entries[0]:
                    tree.children["subscans"] = subscans  # a sequence without children has none
            # BLISS's map at the end (the one of PREPARING if the end has none, or a broken
            # one): what it changed since the start is written over what was
            end_map = (self._file_map(info) if "h5maps" in info else None) or self._start_map
            root = self._with_map(trees, end_map, final=True)
            rewritten = h5maps.changed(self._start_tree, end_map) if end_map and self._start_tree else set()
            for entry in plan.entries:
                tree = root.children[entry.name]
                if end_map is not None:  # with what the map made us say
                    tree.children[NOTE_GROUP] = layout.writer_note(entry, lengths, status, self.state.warnings)
                if "end_time" in tree.children:
                    ends[entry.name] = tree.children.pop("end_time")
                writer.write(h5, entry.name, tree,
                             replace=frozenset({f"{entry.name}/{NOTE_GROUP}/{NOTE.status}", *self._live_paths,
                                                *rewritten}))
                if plotted is None and _worth_plotting(tree):
                    plotted = entry.name
            writer.finish_links()
            if root.attributes:
                set_attributes(h5, root.attributes)
            for entry in plan.entries:  # groups made at the start for data that never came
                entries.prune_empty(h5, entry.name, layout.maybe_empty(entry))
            # the file opens on the last scan with something to show, never on an empty entry
            if plotted is not None:
                entries.set_default(h5, plotted)
            # end_time last: readers of BLISS files (ewoksdata, blissdata's h5api) take it
            # as "this entry is complete" and read it whole from then on
            for name, node in ends.items():
                writer.write(h5[name], "end_time", node)
            self._note_warnings(writer.warnings)
        self._handle.flush()
        self.state.status = status
        npoints = max(lengths.values(), default=0)
        end = info.get("end_reason", "?")
        log = self.log.info if status == SUCCEEDED else self.log.warning
        log("%s: %s (%d points, end_reason %s)", ", ".join(self.state.entries), status, npoints, end)

    def _file_map(self, info: dict) -> Group | None:
        """BLISS's map of our file in ``info`` (``h5maps``), or None; problems are warnings."""
        the_map, problems, notes = h5maps.file_map(info, self._map_path)
        for note in notes:
            self.log.debug(note)
        for problem in problems:
            if problem not in self.state.warnings:
                self._warn(problem)
        return the_map

    def _with_map(self, trees: dict[str, Group], the_map: Group | None, final: bool) -> Group:
        """The file's root holding our entries' ``trees``, BLISS's map merged in (``h5maps``):
        what the map left out or overrode is said once."""
        root = Group()
        root.children.update(trees)
        if the_map is None:
            return root
        plan = self._plan
        streams = {c.stream: f"/{c.entry}/{c.path}" for c in plan.channels}
        folder = os.path.dirname(self._map_path)
        merged = h5maps.merge(root, the_map, streams, {c.stream for c in plan.streamed},
                              lambda name: os.path.exists(os.path.join(folder, name)), final)
        for warning in merged.warnings:
            if warning not in self.state.warnings:
                self._warn(warning)
        new = [c for c in merged.conflicts if c not in self._conflicts]
        if new:  # one warning per scan: the end's conflicts join the start's
            said = h5maps.conflict_warning(self._conflicts) if self._conflicts else None
            self._conflicts += new
            if said in self.state.warnings:
                self.state.warnings.remove(said)
            self._warn(h5maps.conflict_warning(self._conflicts))
        return merged.tree

    def _judge(self, facts: Facts) -> str:
        """The verdict on what is known so far (``verdict``): its warnings not yet said are
        said now (a scan that then waits for room has already said why it is incomplete)."""
        status, warnings = verdict(facts)
        self._note_warnings(warnings[self._judged:])
        self._judged = len(warnings)
        return status

    @staticmethod
    def _answers(needed) -> dict:
        """Read the detector files a kind asks for, until it asks nothing new."""
        known: dict = {}
        while True:
            queries = [q for q in needed(known) if q not in known]
            if not queries:
                return known
            known.update(inspect.answer(queries))

    def _outcomes(self, info: dict) -> dict[str, kinds.Outcome]:
        """What each kind that is not plain appended data adds, by stream."""
        out = {}
        channels = {c.stream: c for c in self._plan.referenced}
        for name, kind in self._kinds.items():
            if kind.appends or (kind.has_channel and name not in channels):
                continue
            known = self._answers(kind.files_needed)
            try:
                out[name] = kind.finish(self._context(channels.get(name), info, known))
            except Exception as exc:  # one stream never fails the scan
                self.log.debug("kind %s failed on %s", kind.name, name, exc_info=True)
                out[name] = kinds.Outcome(accounted=False, warnings=[
                    f"{name}: not written ({kind.name} stream: {type(exc).__name__}: {exc})"])
        return out

    def _subscan_links(self):
        """The sequence's children, as links to their entries (external if in another file)."""
        src = self.source
        children = {}
        deadline = time.monotonic() + self.config.child_wait
        refs = [ref for name in self._plan.subscan_streams for ref in self._kinds[name].children]
        for key, number in refs:
            path, number = src.child_path(key)
            entry = f"{number}.1"
            path = os.path.abspath(path) if path else self.state.file
            if path == self.state.file:
                while not self._has(entry) and time.monotonic() < deadline:
                    self._check_claim()
                    time.sleep(0.1)
                children[entry] = link(f"/{entry}")
            else:
                rel = os.path.relpath(path, os.path.dirname(self.state.file))
                target = rel if not rel.startswith("..") else path
                children[entry] = ExternalLink(target_file=target, target_path=f"/{entry}")
        return group("NXcollection", children)

    def _has(self, entry: str) -> bool:
        with self._handle.lock:
            return entries.has(self._handle.h5, entry)

    # -- reporting ---------------------------------------------------------
    def _publish(self) -> None:
        self._last_publish = time.monotonic()
        if self._superseded.is_set():
            return  # the writer that took over publishes this scan's state now
        if self._on_change is not None:
            try:
                self._on_change(self.state)
            except Exception:  # reporting must never break writing
                self.log.debug("state not published", exc_info=True)

    def _warn(self, message: str) -> None:
        self.state.warnings.append(message)
        self.log.warning(message)

    def _note_warnings(self, warnings: list[str]) -> None:
        for w in warnings:
            self._warn(w)

    def _after_failed_writes(self) -> None:
        """The file cannot be written any more (disk full...): readers get a readable one.

        With room for it, the broken file moves aside and its intact finished entries go
        into a fresh file at the same path, with this scan's entries marked FAILED (its
        data stay in Redis and in the file aside). Without room nothing is moved: the file
        stays at its path (its end of allocation set to its real size if HDF5 cannot read
        it otherwise) and is rebuilt before anything is written to the path again.
        """
        path = self._handle.path
        info = self._desc.info if self._desc else {}
        self.files.failed_entries.setdefault(path, []).append((list(self.state.entries), info, self.state.error))
        try:
            storage.rebuild(self.files, path, self.log, self.config.required_disk_space)
        except NoRoomToRebuild as exc:
            self.log.error("%s", exc)
            readable_in_place(path, self.log)
        except Exception as exc:
            self.log.error("could not make %s readable again: %s: %s", path, type(exc).__name__, exc)

    def _mark(self, status: str) -> None:
        """Best effort: say in the file that this scan's entries failed."""
        if self._handle is None or not self.state.entries:
            return
        try:
            with self._handle.lock:
                entries.set_status(self._handle.h5, self.state.entries, status, self.state.error,
                                   end_time=datetime.now(timezone.utc).astimezone().isoformat())
                for entry in (self._plan.entries if self._plan else []):
                    entries.prune_empty(self._handle.h5, entry.name, layout.maybe_empty(entry))
        except Exception:
            self.log.debug("could not mark the file as %s", status, exc_info=True)


def _worth_plotting(tree) -> bool:
    """The entry has a default plot (``layout.final_tree`` names one only over data)."""
    return "default" in tree.attributes


def _announced_points(info) -> int | None:
    """The points the scan announces (scan_info npoints), if usable: one rule for the
    state BLISS reads and for chunk sizes (a bool is no count; 2**31 points or more is
    no scan's length)."""
    npoints = info.get("npoints") if isinstance(info, dict) else None
    return npoints if type(npoints) is int and 0 < npoints < 1 << 31 else None
