"""Tango device class ``BlissWriter``: what BLISS 2.4's writer mode ``'mapping'`` talks to.

BLISS 2.4 (``bliss/scanning/writer/external_tango_mapping.py``) finds the device of
this class whose property ``session`` is its session and, by scan key:

- ``state()`` ON or RUNNING; ``SaveScan(key)`` until True; ``scan_state(key)`` until
  not UNKNOWN, then until ON (FAULT fails the scan with ``scan_state_reason``);
- every 3 s and at the end: ``GetWarningCount(key)`` and ``GetWarning(json)`` for the
  new ones (logged in the shell), ``scan_state(key)`` (FAULT fails the scan).

Same commands and states as blisswriter 3's device (INIT requested, ON accepted and
being written, OFF done, FAULT, UNKNOWN; the last 200 scans). Our session writer
writes every scan of its session anyway: ``SaveScan`` checks the scan is one of them
and can be written (folder, disk space) and remembers the request.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict

from tango import DevState
from tango.server import command

from ..states import FINAL_STATES
from . import checks, hosting
from .session_device import SessionDevice

_log = logging.getLogger("nexus_writer_service.tango")

#: scans remembered (blisswriter 3 keeps as many)
KEEP = 200


class BlissWriter(SessionDevice):
    """The writer of one BLISS session for BLISS 2.4's 'mapping' mode."""

    def init_device(self) -> None:
        self._lock = threading.Lock()
        #: scan key -> warnings handed out so far (append-only: BLISS asks by index)
        self._requested: OrderedDict[str, list[str]] = OrderedDict()
        super().init_device()

    # -- commands ----------------------------------------------------------------
    @command(dtype_in=str, dtype_out=bool, doc_in="scan key", doc_out="the scan will be written")
    def SaveScan(self, scan_key: str) -> bool:
        state, why = self._session_state()
        if state not in ("ON", "RUNNING"):
            _log.info("[%s] SaveScan(%s) refused: %s", self.session, scan_key, why)
            return False
        identity = self._v().identity(scan_key)
        if identity is None:
            _log.warning("[%s] SaveScan(%s): no such scan in Redis", self.session, scan_key)
            return False
        if identity.session != self.session:
            _log.warning("[%s] SaveScan(%s): a scan of session %r, not of this device's",
                         self.session, scan_key, identity.session)
            return False
        with self._lock:
            self._requested.setdefault(scan_key, [])
            self._requested.move_to_end(scan_key)
            while len(self._requested) > KEEP:
                self._requested.popitem(last=False)
        return True

    def _state_of(self, scan_key: str) -> tuple[str, str]:
        view = self._v()
        record = view.record(scan_key)
        with self._lock:
            requested = scan_key in self._requested
        refusal = ""
        if requested and (record is None or record.get("status") not in FINAL_STATES):
            path = view.target_file(scan_key, record)
            refusal = checks.write_refusal(path, view.path_policy()) or checks.disk_space_message(
                path, self.required_disk_space, "required_disk_space")
        return checks.mapping_scan_state(record, requested, refusal)

    @command(dtype_in=str, dtype_out=DevState, doc_in="scan key",
             doc_out="INIT requested, ON being written, OFF done, FAULT failed, UNKNOWN not known")
    def scan_state(self, scan_key: str) -> DevState:
        return getattr(DevState, self._state_of(scan_key)[0])

    @command(dtype_in=str, dtype_out=str, doc_in="scan key")
    def scan_state_reason(self, scan_key: str) -> str:
        return self._state_of(scan_key)[1]

    def _warnings(self, scan_key: str) -> list[str]:
        """The scan's warnings so far: the writer's, then low disk space (once)."""
        view = self._v()
        record = view.record(scan_key) or {}
        with self._lock:
            # a scan never requested gets a fresh list (nothing remembered for it)
            known = self._requested.get(scan_key, [])
        for text in record.get("warnings") or []:
            if text not in known:
                known.append(text)
        if not any(w.startswith("Free disk space below") for w in known):
            low = checks.disk_space_message(view.target_file(scan_key, record),
                                            self.recommended_disk_space, "recommended_disk_space")
            if low:
                known.append(low)
        return known

    @command(dtype_in=str, dtype_out=int, doc_in="scan key")
    def GetWarningCount(self, scan_key: str) -> int:
        return len(self._warnings(scan_key))

    @command(dtype_in=str, dtype_out=str, doc_in='{"scan_key": ..., "index": ...}')
    def GetWarning(self, json_value: str) -> str:
        value = json.loads(json_value)
        return self._warnings(value["scan_key"])[int(value["index"])]

    @command
    def Start(self) -> None:
        hosting.start(self.session)

    @command
    def Stop(self) -> None:
        hosting.stop(self.session)
