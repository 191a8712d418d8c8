"""Tango device class ``NexusWriter``: what BLISS 2.2.1's writer mode ``'nexus'`` talks to.

BLISS (``bliss/scanning/writer/external_tango.py``, ``ExternalTangoNexusWriter``)
finds in the Tango database the device of this class whose property ``session`` is
its session (and ``beacon_host``, when set, its ``$BEACON_HOST``), then for every
saved scan, by ``scan.identifier`` (``"2_ascan"``):

- ``state()`` ON or RUNNING, else the scan fails showing ``status()``;
- ``makedirs(root)``; ``scan_exists(name)`` polled until True (10 s);
- ``scan_has_write_permissions(name)``, ``scan_disk_space_error(name)``;
- every 3 s and at the end: ``scan_disk_space_warning(name)`` and ``scan_state(name)``
  (FAULT: the scan fails with ``scan_state_reason(name)``).

Every answer comes from what our session writer published in Redis (the
completeness protocol) and from the scan's identity: nothing is kept here that
could disagree with the writer. One device per session; the hosting service
(``NexusWriterService INSTANCE``) runs the session writer next to it.
"""

from __future__ import annotations

import enum
import logging
import os
import time

from tango import AttrWriteType, DevState
from tango.server import attribute, command

from ..states import FINAL_STATES, SUCCEEDED
from . import checks, hosting, options
from .session_device import SessionDevice
from .view import RECENT_WINDOW

#: log4tango levels (what a device's Tango logger takes) by Python logging level
_LOG4TANGO = {logging.NOTSET: 100, logging.DEBUG: 600, logging.INFO: 500, logging.WARNING: 400,
              logging.ERROR: 300, logging.CRITICAL: 200}
_FROM_LOG4TANGO = {v: k for k, v in _LOG4TANGO.items()}

#: ESRF's enumeration of the log level attributes (same labels, same values)
LogLevel = enum.IntEnum("LogLevel", {name: i for i, name in enumerate(options.LOG_LEVEL_NAMES)})
#: ESRF's device profiles each scan (cProfile or tracemalloc, 30/50/100 lines) on request
Profiling = enum.IntEnum("Profiling", {name: i for i, name in enumerate(
    ("OFF", "CPU30", "CPU50", "CPU100", "WALL30", "WALL50", "WALL100", "MEM30", "MEM50", "MEM100"))})

_log = logging.getLogger("nexus_writer_service.tango")


def _state(name: str) -> DevState:
    return getattr(DevState, name)


class NexusWriter(SessionDevice):
    """The NeXus writer of one BLISS session (drop-in for ESRF's device of that class)."""

    def init_device(self) -> None:
        #: finished scans before this time are left out of the scan_* attributes (purge_scans)
        self._purged_at = getattr(self, "_purged_at", 0.0)
        super().init_device()

    def _scan(self, identifier: str) -> tuple[str | None, dict | None]:
        view = self._v()
        key = view.key_of(identifier)
        return key, view.record(key)

    # -- what BLISS calls ------------------------------------------------------
    @command(dtype_in=str, dtype_out=bool, doc_in="scan identifier (number_name)",
             doc_out="the writer has seen this scan")
    def scan_exists(self, identifier: str) -> bool:
        return self._scan(identifier)[1] is not None

    @command(dtype_in=str, dtype_out=bool, doc_in="scan identifier",
             doc_out="True; the reason is raised when the writer cannot write the scan's file")
    def scan_has_write_permissions(self, identifier: str) -> bool:
        key, record = self._scan(identifier)
        view = self._v()
        refusal = checks.write_refusal(view.target_file(key, record), view.path_policy())
        if refusal:
            # raised, not False: BLISS then shows our reason instead of a bare refusal
            raise PermissionError(f"the NeXus writer cannot write scan {identifier}: {refusal}")
        return True

    @command(dtype_in=str, dtype_out=str, doc_in="scan identifier", doc_out="error message or empty")
    def scan_disk_space_error(self, identifier: str) -> str:
        key, record = self._scan(identifier)
        return checks.disk_space_message(self._v().target_file(key, record),
                                         self.required_disk_space, "required_disk_space")

    @command(dtype_in=str, dtype_out=str, doc_in="scan identifier", doc_out="warning message or empty")
    def scan_disk_space_warning(self, identifier: str) -> str:
        key, record = self._scan(identifier)
        return checks.disk_space_message(self._v().target_file(key, record),
                                         self.recommended_disk_space, "recommended_disk_space")

    @command(dtype_in=str, dtype_out=bool, doc_in="scan identifier")
    def scan_has_required_disk_space(self, identifier: str) -> bool:
        return not self.scan_disk_space_error(identifier)

    @command(dtype_in=str, dtype_out=DevState, doc_in="scan identifier",
             doc_out="INIT seen, ON writing, OFF finished, FAULT failed, UNKNOWN not seen")
    def scan_state(self, identifier: str) -> DevState:
        return _state(checks.nexus_scan_state(self._scan(identifier)[1])[0])

    @command(dtype_in=str, dtype_out=str, doc_in="scan identifier")
    def scan_state_reason(self, identifier: str) -> str:
        return checks.nexus_scan_state(self._scan(identifier)[1])[1]

    @command(dtype_in=str, dtype_out=(str,), doc_in="scan identifier", doc_out="file::/entry of each entry")
    def scan_url(self, identifier: str) -> list[str]:
        record = self._scan(identifier)[1] or {}
        return [f"{record['file']}::/{e}" for e in record.get("entries") or []] if record.get("file") else []

    @command(dtype_in=str, doc_in="absolute folder path")
    def makedirs(self, path: str) -> None:
        if not os.path.isabs(path):
            raise ValueError(f"not an absolute path: {path!r}")
        os.makedirs(path, exist_ok=True)

    # -- control ---------------------------------------------------------------
    @command(doc_in="resume: start the session writer (hosted) and accept scans again")
    def Start(self) -> None:
        hosting.start(self.session)

    @command(doc_in="stop the session writer (hosted; running scans are finished) and refuse scans")
    def Stop(self) -> None:
        hosting.stop(self.session)

    @command(dtype_in=str, doc_in="scan identifier (number_name)",
             doc_out="the writer stops writing the scan: the entry keeps what was written (INCOMPLETE)")
    def stop_scan(self, identifier: str) -> None:
        view = self._v()
        key = view.key_of(identifier)
        if key is None:
            raise ValueError(f"no scan {identifier} in session {self.session}")
        record = view.record(key)
        if record is not None and record.get("status") in FINAL_STATES:
            return  # nothing left to stop
        view.reader.request_stop(key)
        _log.info("[%s] stop_scan(%s): the writer stops writing %s", self.session, identifier, key)

    @command(doc_in="leave the scans finished successfully out of the scan_* attributes")
    def purge_scans(self) -> None:
        self._purged_at = time.time()

    # -- ESRF's attributes: one line per scan, newest first -------------------------
    def _listed(self) -> list[dict]:
        """The recent scans the scan_* attributes show (not those purged)."""
        return [r for r in self._v().recent()
                if not (r.get("status") == SUCCEEDED and (r.get("updated") or 0) <= self._purged_at)]

    @staticmethod
    def _ident(record: dict) -> str:
        return f"{record.get('number')}_{record.get('name')}"

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="scan identifiers (number_name)")
    def scan_names(self) -> list[str]:
        return [self._ident(r) for r in self._listed()]

    @attribute(dtype=(DevState,), max_dim_x=RECENT_WINDOW, doc="state of each scan (as scan_state)")
    def scan_states(self) -> list[DevState]:
        return [_state(checks.nexus_scan_state(r)[0]) for r in self._listed()]

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: STATE reason")
    def scan_states_info(self) -> list[str]:
        return [f"{self._ident(r)}: {' '.join(checks.nexus_scan_state(r))}" for r in self._listed()]

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: file::/entry of each entry")
    def scan_urls(self) -> list[str]:
        return [f"{self._ident(r)}: " + ", ".join(f"{r['file']}::/{e}" for e in r.get("entries") or [])
                for r in self._listed() if r.get("file")]

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: when the writer began writing it")
    def scan_start(self) -> list[str]:
        return [f"{self._ident(r)}: {_when(r.get('started'), 'not started')}" for r in self._listed()]

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: when the writer finished it")
    def scan_end(self) -> list[str]:
        return [f"{self._ident(r)}: {_when(r.get('ended'), 'not finished')}" for r in self._listed()]

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: seconds of writing (so far)")
    def scan_duration(self) -> list[str]:
        out = []
        for r in self._listed():
            start, end = r.get("started"), r.get("ended") or time.time()
            out.append(f"{self._ident(r)}: " + (f"{end - start:.1f} s" if start else "not started"))
        return out

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: points written (of those announced)")
    def scan_progress(self) -> list[str]:
        out = []
        for r in self._listed():
            points = max((r.get("written") or {}).values(), default=0)
            of = f"/{r['expected']}" if r.get("expected") else ""
            out.append(f"{self._ident(r)}: {points}{of} points")
        return out

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="identifier: status, file, warnings")
    def scan_info(self) -> list[str]:
        out = []
        for r in self._listed():
            warnings = r.get("warnings") or []
            text = f"{self._ident(r)}: {r.get('status')} {r.get('file') or '-'}"
            out.append(text + (f" ({len(warnings)} warning(s): {warnings[0]})" if warnings else ""))
        return out

    @attribute(dtype=LogLevel, access=AttrWriteType.READ_WRITE,
               doc="log level of this service and of its session's writer (the running one within a heartbeat)")
    def writer_log_level(self) -> int:
        return options.level_index(logging.getLogger("nexus_writer_service").getEffectiveLevel())

    @writer_log_level.write
    def writer_log_level(self, value: int) -> None:
        level = options.LOG_LEVELS[int(value)]
        logging.getLogger("nexus_writer_service").setLevel(level)
        ctl = hosting.control()
        if ctl is not None and hasattr(ctl, "set_log_level"):
            ctl.set_log_level(logging.getLevelName(level))
        # the running writer takes it at its next heartbeat (it may run anywhere: Redis tells it)
        view = self._v()
        view.reader.set_log_level(view.session, logging.getLevelName(level))

    @attribute(dtype=LogLevel, access=AttrWriteType.READ_WRITE, doc="Tango log level of this device")
    def tango_log_level(self) -> int:
        level = _FROM_LOG4TANGO.get(self.get_logger().get_level(), logging.NOTSET)
        return options.level_index(level)

    @tango_log_level.write
    def tango_log_level(self, value: int) -> None:
        self.get_logger().set_level(_LOG4TANGO[options.LOG_LEVELS[int(value)]])

    @attribute(dtype=Profiling, access=AttrWriteType.READ_WRITE,
               doc="ESRF's per-scan profiling: OFF only (see doc/benchmarks.md for how this writer is measured)")
    def resource_profiling(self) -> int:
        return Profiling.OFF

    @resource_profiling.write
    def resource_profiling(self, value: int) -> None:
        """Refused, saying why, rather than accepted and ignored: a control-room panel that
        sets it must not believe scans are profiled."""
        if int(value) != Profiling.OFF:
            raise ValueError(f"resource_profiling {Profiling(int(value)).name} is not provided by "
                             "nexus_writer_service: profile the session writer (attribute writer_pid) with "
                             "py-spy, or measure with ./benchmarks/run.sh (doc/benchmarks.md)")

    # -- for a control room ------------------------------------------------------
    @attribute(dtype=(str,), max_dim_x=1000, doc="sessions whose writers report to this Redis")
    def sessions(self) -> list[str]:
        return self._v().reader.sessions()

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="recent scans, newest first: identifier status points file")
    def recent_scans(self) -> list[str]:
        out = []
        for r in self._v().recent():
            points = max((r.get("written") or {}).values(), default=0)
            out.append(f"{r.get('number')}_{r.get('name')} {r.get('status')} {points} {r.get('file') or '-'}")
        return out

    @attribute(dtype=(str,), max_dim_x=RECENT_WINDOW, doc="Redis keys of the recent scans, newest first")
    def scan_keys(self) -> list[str]:
        return [r.get("key", "") for r in self._v().recent()]

    @attribute(dtype=int, doc=f"FAILED among the last {RECENT_WINDOW} scans")
    def failed_scans(self) -> int:
        return self._v().counts()["failed"]

    @attribute(dtype=int, doc=f"INCOMPLETE among the last {RECENT_WINDOW} scans")
    def incomplete_scans(self) -> int:
        return self._v().counts()["incomplete"]

    @attribute(dtype=int, doc="scans seen and not finished")
    def active_scans(self) -> int:
        return self._v().counts()["active"]

    @attribute(dtype=int, doc="pid of the session writer (0: none alive)")
    def writer_pid(self) -> int:
        heartbeat = self._v().heartbeat()
        return int(heartbeat.get("pid") or 0) if heartbeat else 0

    @attribute(dtype=str, doc="where the scans and the writer's state are")
    def data_url(self) -> str:
        return self._v().redis_url


def _when(epoch: float | None, otherwise: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else otherwise
