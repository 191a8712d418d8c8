"""Writing one scan: from its Redis description to finished NeXus entries.

The steps follow the scan's life (``ScanWriter._run``, in order): load it and wait until
PREPARED (streams exist), plan its entries, open the file and create every entry with
empty datasets, append data as it arrives (``streaming``), then add what is only known
at the end (``finishing``), judged by ``verdict``. Whatever happens to this scan is
logged and recorded in the entry's ``writer`` note; it never propagates to other scans
(``run``; ``recovery``: hand-over, resumed entries, files taken away or broken).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone

from .. import kinds
from ..compression import preset as filter_preset
from ..descriptions import ScanDescription
from ..io import entries
from ..io.arrays import ArraySpec, StorageOptions
from ..io.files import FileChangedError, FileRegistry, set_publisher
from ..io.space import no_space_message, storage_errno
from ..io.tree import TreeWriter, set_attributes
from ..mapping import beamline, layout
from ..mapping.layout import ScanPlan
from ..mapping.scaninfo import clean as clean_info
from ..metadata.config import BeamlineConfig, ConfigError, merged
from ..metadata.config import from_dict as config_from_dict
from ..records import ScanRecord
from ..states import FAILED, FINAL_STATES, INCOMPLETE, SKIPPED, SUCCEEDED, WRITING
from ..transport.scans import CLOSED, PREPARED, ScanSource
from . import finishing, kindcalls, recovery, storage
from .blissmap import BlissMap
from .config import WriterConfig
from .masterfiles import MasterLink, master_links, update_master_files
from .paths import scan_file, target_file
from .recovery import AlreadyWritten, EntryExistsError, Superseded
from .scanfile import RESERVE_BYTES, ScanFile
from .scheduler import NO_SLOT
from .streaming import Appender, Controls, ReadLoop, StreamEnd
from .verdict import Facts, verdict

__all__ = ["ScanWriter", "ScanLogger", "Failed", "AlreadyWritten", "EntryExistsError", "Superseded",
           "RESERVE_BYTES"]


class Failed(Exception):
    """The scan fails for a reason stated in full (no exception type in front of it)."""


class ScanLogger(logging.LoggerAdapter):
    """Prefixes ``[session] [scan]``; the prefix is data, never part of the format string.

    Scan and session names come from users: a name with ``%s`` must not be read by
    logging's ``msg % args`` (it would lose the line: "--- Logging error ---").
    """

    def log(self, level, msg, *args, **kwargs):
        if self.isEnabledFor(level):
            extra = self.extra or {}
            prefix = f"[{extra['session']}] [{extra['scan']}] "
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
        self._scan_name = {"session": session, "scan": source.key}
        self.log = ScanLogger(logger, self._scan_name)
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
        self._desc: ScanDescription | None = None
        self._plan: ScanPlan | None = None
        #: the open file, once the scan's entries are created
        self._file: ScanFile | None = None
        #: its appender (and the kinds of the scan's streams), from then on
        self._appender: Appender | None = None
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
            self._failed(e)
        finally:
            if self.state.status in FINAL_STATES and self.state.ended is None:
                self.state.ended = time.time()
            self._close_file()
            self._appender = None  # (its kinds and datasets: the session keeps the record only)
            self._publish()
            self.source.close()
        return self.state

    def _failed(self, e: Exception) -> None:
        self.slot.take()  # marking, quarantine, rebuilding: file work
        if self._superseded.is_set():  # whatever failed, the file is the new writer's now
            self.log.debug("error after the session was taken over", exc_info=True)
            self._hand_over()
            return
        self.state.status = FAILED
        self.state.error = self._reason(e)
        self.log.error("FAILED: %s", self.state.error,
                       exc_info=self.log.isEnabledFor(logging.DEBUG) or bool(os.environ.get("NXW_TRACEBACKS")))
        file = self._file
        if file is None:
            return
        refused = storage_errno(e) is not None
        if refused or self.files.quarantine(file.handle, keep=file.arrays.values()):
            # the storage refused a write: whatever a flush now says (HDF5 may report
            # success with part of its cache unwritten), the handle is not trusted again
            self.files.quarantine(file.handle, keep=file.arrays.values(), force=True)
            recovery.after_failed_writes(self.files, file.path, self.state.entries,
                                         self._desc.info if self._desc else {}, self.state.error,
                                         self.log, self.config.required_disk_space)
            if refused:
                self._publish()  # FAILED, before the writer stops publishing
                self._on_poisoned(f"HDF5 could not write {file.path} ({self.state.error.split(': ')[0]})")
        else:
            recovery.mark(file.handle, self.state.entries, self._plan, FAILED, self.state.error, self.log)

    def _close_file(self) -> None:
        if self._file is not None:
            self.slot.take()  # closing the file flushes it
            self._file.close(self.files, self.state.entries)
            self._file = None

    def _reason(self, exc: Exception) -> str:
        """The error as the scan states it: a refused write names the disk and its free space."""
        if isinstance(exc, Failed):
            return str(exc)
        text = f"{type(exc).__name__}: {exc}"
        number = storage_errno(exc)
        path = self._file.path if self._file is not None else self.state.file
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
        change, file = changed.change, self._file
        self.slot.take()
        path = file.path if file is not None else self.state.file
        if change.kind == "read-only":  # the file is whole: said in it, then closed as usual
            error = Failed(f"{path}: {change.message}: nothing more written "
                           f"({self._points()} points in the file)")
            self.state.error = self._reason(error)
            if file is not None:
                recovery.mark(file.handle, self.state.entries, self._plan, FAILED, self.state.error, self.log)
            self._close_file()
            raise error
        if file is not None:
            lost = recovery.finished_elsewhere(file.handle)
            file.handle.writing.difference_update(self.state.entries)
            self.files.quarantine(file.handle, keep=file.arrays.values(), force=True)
            self.files.release(file.handle)
            self._file = None
            if lost:
                self._warn(f"{path}: entries {', '.join(lost)} were finished in the lost file and are gone with it")
        self._rewritten = change.message
        if attempt > recovery.MAX_REWRITES:
            raise OSError(changed.errno, f"{path}: {change.message} (again, {attempt} times): given up")
        self._warn(f"{path}: {change.message}: the scan is written again from what Redis holds")
        self._reset()
        return True

    def _check_claim(self) -> None:
        """Between steps (never inside one: nothing is left half-written)."""
        if self._superseded.is_set():
            raise Superseded()

    def _hand_over(self) -> None:
        """What this writer wrote stays, flushed; the writer that took over goes on from it."""
        points = self._points()
        if self._file is not None:
            self.slot.take()
            try:
                self._file.flush()
            except Exception as exc:  # the new writer checks the file like one a crash left
                self.log.error("could not flush %s before leaving it: %s", self._file.path, exc)
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

    # -- the steps, in order -------------------------------------------------
    def _run(self) -> None:
        self._check_claim()  # queued while the session was taken over
        desc = self._prepared()
        if desc.info.get("save") is False:
            self.state.status = SKIPPED
            self.log.info("not saved (save=False): nothing written")
            return
        dataset_file, from_template = target_file(desc, self.config.base_path, self.config.default_path_template)
        # BLISS's separate_scan_files: the entries in the scan's own file, linked from the dataset's
        path = scan_file(desc.info, dataset_file) or dataset_file
        self.state.file = path
        config = self._beamline_config(desc.info)
        plan = self._plan = layout.plan_scan(desc, config)
        bliss_map = BlissMap(path, plan, desc.info, self.state.warnings, self._warn, self.log)
        # the scan's own handlers, not the planner's: those answered questions about the
        # descriptions (pure mapping); these hold what the scan's events tell while it runs
        handlers = {s.name: kinds.handler(s) for s in desc.streams}
        self.state.warnings.extend(plan.warnings)
        for w in plan.warnings:
            self.log.warning(w)
        self._check_claim()
        needs_plugin = self._create(path, plan, desc, config, handlers, bliss_map)
        self._link_master_files(desc, dataset_file, path)
        where = " (no file named by BLISS: default template)" if from_template else ""
        self.log.info("writing %s in %s%s", ", ".join(self.state.entries), path, where)
        self.state.status = WRITING
        self.state.started = time.time()
        self._publish()
        end = self._stream(plan, desc)
        self._finish(end, config, needs_plugin, bliss_map)

    def _prepared(self) -> ScanDescription:
        """The scan loaded, PREPARED (its streams exist), described and classified."""
        src = self.source
        src.load()
        self.state.name, self.state.number = src.scan.name, src.scan.number
        self.state.expected = _announced_points(src.scan.info)
        self._scan_name["scan"] = f"{src.scan.number} {src.scan.name}"
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
        return desc

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

    def _create(self, path: str, plan: ScanPlan, desc: ScanDescription, config: BeamlineConfig,
                handlers: dict[str, kinds.StreamKind], bliss_map: BlissMap) -> frozenset:
        """Open the file, create the entries (or complete this scan's, left unfinished);
        the streams whose dataset only readers with a filter plugin decode are returned."""
        handle = self._storage.open_when_free(self.files, path, self.log, self.config.required_disk_space)
        file = self._file = ScanFile(handle, self.config, self.slot, self._storage, self._warn, self.log,
                                     self._points)
        if not file.make_room(0.0):  # the start tree's blocks
            raise storage.NoRoom(28, "no room for the scan's entries: nothing written, the data stay in Redis")
        compression = self.config.compression or None
        expected = self.state.expected or 0
        # BLISS's writer_options (chunks, filter) for this scan, under the configuration's choices
        chunking, problems = StorageOptions.from_writer_options(desc.info.get("writer_options"))
        for problem in problems:
            self._warn(problem)
        specs = {c.stream: ArraySpec(c.dtype, c.point_shape, c.fill_value,
                                     beamline.channel_compression(c, config, chunking.compression,
                                                                  compression or ""),
                                     expected, chunking)
                 for c in plan.streamed}
        needs_plugin = frozenset(name for name, spec in specs.items() if filter_preset(spec.filter).plugin)
        with handle.lock:
            h5 = handle.h5
            set_publisher(h5, desc.info)
            existing = [e.name for e in plan.entries if entries.has(h5, e.name)]
            resume = bool(existing) and recovery.own_unfinished(h5, existing, desc.key, path)
            writer = TreeWriter(specs, resume=resume)
            root = bliss_map.start_root({e.name: layout.start_tree(desc, e) for e in plan.entries})
            for entry in plan.entries:
                tree = root.children[entry.name]
                if entries.has(h5, entry.name):  # resumed: complete what is missing
                    writer.write(h5, entry.name, tree)
                else:
                    entries.create(h5, entry.name,
                                   lambda parent, name: writer.write(parent, name, tree, as_name=entry.name))
                self.state.entries.append(entry.name)
            if root.attributes:  # BLISS's map's for the file's root
                set_attributes(h5, root.attributes)
            writer.finish_links()
            handle.writing.update(self.state.entries)
            file.arrays = writer.streams
            appender = self._appender = Appender(file, handlers, self._warn)
            self._note_warnings(writer.warnings)
            if resume:
                self.log.info("resuming %s (%d points already in the file)", ", ".join(existing),
                              appender.resumed_points)
        finishing.entries_created()  # a sequence waiting to link them
        # visible to readers with the next periodic flush (back-to-back scans share the file)
        file.dirty = not file.flush(self.config.flush_period)
        return needs_plugin

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

    def _stream(self, plan: ScanPlan, desc: ScanDescription) -> StreamEnd:
        assert self._file is not None and self._appender is not None  # made by ``_create``
        controls = Controls(check_claim=self._check_claim, confirm_claim=self._confirm_claim,
                            stop_requested=self._stop_requested, progress=self._progress, warn=self._warn)
        loop = ReadLoop(self.source, self._file, self._appender, plan, desc, self.config, self.slot,
                        self.log, controls, self.state.file or self._file.path)
        return loop.run()

    def _finish(self, end: StreamEnd, config: BeamlineConfig, needs_plugin: frozenset, bliss_map: BlissMap) -> None:
        src, desc, plan, file, appender = self.source, self._desc, self._plan, self._file, self._appender
        assert desc is not None and plan is not None and file is not None and appender is not None
        if not src.closed:
            self.slot.give()
        closed = src.closed or (not end.stopped and self._wait_for(CLOSED, min(self.config.stall_timeout, 60.0)))
        self.slot.take()
        self._check_claim()
        info, problems = clean_info(src.info)
        for problem in problems:
            if problem not in self.state.warnings:
                self._warn(problem)
        if not info.get("end_time"):  # as start_time: the entry always says when it ended
            info["end_time"] = datetime.now(timezone.utc).astimezone().isoformat()
            self._warn("scan_info has no end_time: the writer's clock at the end is written")
        lengths = appender.lengths()
        # streams read to their sealed end hold what was published: no need to ask again
        trusted = {n: v for n, v in lengths.items() if n not in appender.broken}
        published = src.published_lengths(known=trusted if end.drained and not appender.lost else None)
        self.state.written = dict(lengths)
        facts = Facts(closed=closed, stopped=end.stopped, complete=end.complete, written=lengths,
                      published=published, lost=dict(appender.lost), broken=set(appender.broken),
                      planned=[(ch.stream, f"{ch.entry}/{ch.path}") for ch in plan.streamed],
                      known=set(appender.handlers), rewritten=self._rewritten)
        judged = [0]  # warnings of the verdict already said

        def judge(facts: Facts) -> str:
            """The verdict on what is known so far: its warnings not yet said are said now
            (a scan that then waits for room has already said why it is incomplete)."""
            status, warnings = verdict(facts)
            self._note_warnings(warnings[judged[0]:])
            judged[0] = len(warnings)
            return status

        judge(facts)  # what is wrong so far is said before the kinds and the disk are asked
        outcomes = kindcalls.outcomes(plan, appender.handlers, self.state.file or file.path, info, self.log)
        lengths = dict(lengths)
        for name, outcome in outcomes.items():
            lengths[name] = outcome.written
            self.state.written[name] = outcome.written
        facts = replace(facts, outcomes=outcomes)
        judge(facts)
        # how the scan ended and how far it got: what progress is measured against now
        self.state.end_reason = str(info["end_reason"]) if info.get("end_reason") else None
        counts = [count if isinstance(count := published.get(n), int) and count >= 0 else n_written
                  for n, n_written in self.state.written.items() if n not in outcomes]
        counts += [o.written + o.missing for o in outcomes.values()]
        self.state.published = max(counts, default=0)
        facts = replace(facts, no_room=not file.make_room(0.0))  # the final tree's blocks
        change = file.handle.check()  # before the final tree: never into a file taken away
        if change is not None and change.kind != "moved":
            raise FileChangedError(file.path, change)
        if change is not None:
            new_path = change.new_path or file.path  # (a moved file's handle knows where it went)
            facts = replace(facts, moved=(file.path, change.message, new_path))
            self.state.file = new_path
        status = judge(facts)
        subscans = None
        if plan.subscan_streams:
            self.slot.give()  # the children's entries are written meanwhile
            subscans = finishing.subscan_links(src, plan, appender.handlers, file.handle, self.state.file or "",
                                               self.config.child_wait, self._check_claim)
        self.slot.take()
        self._check_claim()  # the final tree is written whole, or not at all
        with file.handle.lock:
            file.sync()  # every point in the file before the entry is finished
            self._note_warnings(finishing.write_final_tree(
                file.handle, plan, desc, info, lengths, status, self.state.warnings, config, outcomes,
                needs_plugin, subscans, file.live_paths, bliss_map))
        file.handle.flush()
        self.state.status = status
        npoints = max(lengths.values(), default=0)
        log = self.log.info if status == SUCCEEDED else self.log.warning
        log("%s: %s (%d points, end_reason %s)", ", ".join(self.state.entries), status, npoints,
            info.get("end_reason", "?"))

    # -- reporting ---------------------------------------------------------
    def _points(self) -> int:
        """The most points (frames, events) of any stream in the file so far."""
        return max(self._appender.written().values(), default=0) if self._appender is not None else 0

    def _progress(self) -> None:
        """Progress while streaming, published at most once a second."""
        if time.monotonic() - self._last_publish > 1.0 and self._appender is not None:
            written = self._appender.written()
            if written != self.state.written:
                self.state.written = written
                self._publish()

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


def _announced_points(info) -> int | None:
    """The points the scan announces (scan_info npoints), if usable: one rule for the
    state BLISS reads and for chunk sizes (a bool is no count; 2**31 points or more is
    no scan's length)."""
    npoints = info.get("npoints") if isinstance(info, dict) else None
    return npoints if type(npoints) is int and 0 < npoints < 1 << 31 else None
