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
(``NexusWriterService --tango``) runs the session writer next to it.
"""

from __future__ import annotations

import logging
import os

from tango import DevState
from tango.server import attribute, command

from . import checks, hosting
from .session_device import SessionDevice
from .view import RECENT_WINDOW

_log = logging.getLogger("nexus_writer_service.tango")


def _state(name: str) -> DevState:
    return getattr(DevState, name)


class NexusWriter(SessionDevice):
    """The NeXus writer of one BLISS session (drop-in for ESRF's device of that class)."""

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
        refusal = checks.write_refusal(self._v().target_file(key, record))
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
