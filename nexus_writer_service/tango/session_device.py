"""What the Tango devices of a BLISS session have in common: the properties that name the
session and its thresholds, and a device state that is the session writer's.

``NexusWriter`` (BLISS 2.2's mode 'nexus') and ``BlissWriter`` (BLISS 2.4's 'mapping')
answer different calls about the same session writer.
"""

from __future__ import annotations

import logging

from tango import DevState
from tango.server import Device, device_property

from ..io.space import RECOMMENDED_MB, REQUIRED_MB
from . import options
from .view import SessionView, open_view

_log = logging.getLogger("nexus_writer_service.tango")


class SessionDevice(Device):
    """A device in front of one session writer (its state and status are the writer's)."""

    session = device_property(dtype=str, default_value="", doc="BLISS session name (required)")
    beacon_host = device_property(dtype=str, default_value="",
                                  doc="host:port of the session's Beacon (BLISS matches it with $BEACON_HOST)")
    redis_url = device_property(dtype=str, default_value="",
                                doc="Redis data URL (default: the hosting service's, else asked from beacon_host)")
    required_disk_space = device_property(dtype=float, default_value=REQUIRED_MB,
                                          doc="MB: less free space refuses the scan")
    recommended_disk_space = device_property(dtype=float, default_value=RECOMMENDED_MB,
                                             doc="MB: less free space warns in the BLISS shell")
    # ESRF's writer options, same names: honoured or refused at start (``options.py``)
    keepshape = device_property(dtype=bool, default_value=False, doc=options.WRITER_OPTIONS["keepshape"][0])
    multivalue_positioners = device_property(dtype=bool, default_value=False,
                                             doc=options.WRITER_OPTIONS["multivalue_positioners"][0])
    enable_external_nonhdf5 = device_property(dtype=bool, default_value=False,
                                              doc=options.WRITER_OPTIONS["enable_external_nonhdf5"][0])
    disable_external_hdf5 = device_property(dtype=bool, default_value=False,
                                            doc=options.WRITER_OPTIONS["disable_external_hdf5"][0])
    copy_non_external = device_property(dtype=bool, default_value=False,
                                        doc=options.WRITER_OPTIONS["copy_non_external"][0])
    noconfig = device_property(dtype=bool, default_value=False, doc=options.WRITER_OPTIONS["noconfig"][0])

    def init_device(self) -> None:
        super().init_device()
        self._refused = options.refusals({name: getattr(self, name) for name in options.WRITER_OPTIONS})
        for text in self._refused:
            _log.error("[%s] %s", self.get_name(), text)
        self._view, self._init_error = open_view(self.session, self.redis_url, self.beacon_host)
        if self._init_error:
            _log.error("[%s] %s", self.get_name(), self._init_error)

    def _session_state(self) -> tuple[str, str]:
        if self._refused:  # BLISS shows this and refuses the scan: files are not written otherwise
            return "FAULT", "; ".join(self._refused)
        if self._view is None:
            return "FAULT", self._init_error
        return self._view.state()

    def dev_state(self) -> DevState:
        return getattr(DevState, self._session_state()[0])

    def dev_status(self) -> str:
        return f"{self.session}: {self._session_state()[1]}"

    def _v(self) -> SessionView:
        if self._view is None:
            raise RuntimeError(self._init_error)
        return self._view
