"""What the devices know of the process that hosts them (no Tango here).

``NexusWriterService INSTANCE`` (Tango server) runs the session writers (as supervised
processes) and the Tango devices of those sessions in one process. The devices
read the writers' state from Redis; for what Redis cannot say (is the process
starting? did it exit, with which code? where is its log?) and for their
Start/Stop commands, they ask the :class:`WriterControl` registered here.

A device that no service hosts (a test, another server) still answers from
Redis; its Stop then only makes it refuse scans (state OFF), Start undoes that.
"""

from __future__ import annotations

import threading
from typing import Protocol


class WriterControl(Protocol):
    """The hosting service's handle on the session writer processes."""

    redis_url: str

    def start(self, session: str) -> None: ...

    def stop(self, session: str) -> None: ...

    def process(self, session: str) -> dict | None:
        """``running``, ``pid``, ``uptime``, ``last_exit``, ``restarts``, ``log``, and
        ``stopping`` (told to stop, not gone yet)."""


_lock = threading.Lock()
_control: WriterControl | None = None
_stopped: set[str] = set()


def host(control: WriterControl | None) -> None:
    """Make ``control`` the one the devices of this process use (None: not hosted)."""
    global _control
    with _lock:
        _control = control
        _stopped.clear()


def control() -> WriterControl | None:
    return _control


def stopped(session: str) -> bool:
    """True after the Stop command for this session (shared by its devices, kept over Init)."""
    return session in _stopped


def stop(session: str) -> None:
    with _lock:
        _stopped.add(session)
        ctl = _control
    if ctl is not None:
        ctl.stop(session)


def start(session: str) -> None:
    with _lock:
        _stopped.discard(session)
        ctl = _control
    if ctl is not None:
        ctl.start(session)


class SupervisorControl:
    """:class:`WriterControl` over the service's :class:`~nexus_writer_service.service.supervisor.Supervisor`."""

    def __init__(self, supervisor):
        self._supervisor = supervisor
        self.redis_url = supervisor.redis_url
        #: session -> pid of the writer told to stop: until it is gone, it still beats
        self._stopping: dict[str, int] = {}

    def start(self, session: str) -> None:
        if session in self._supervisor.writers:
            self._supervisor.release(session)

    def stop(self, session: str) -> None:
        if session in self._supervisor.writers:
            pid = self._supervisor.processes()[session]["pid"]
            if pid is not None:
                self._stopping[session] = pid
            self._supervisor.hold(session)

    def set_log_level(self, name: str) -> None:
        """The log level of the session writers started from now on (``--log``)."""
        self._supervisor.log_level = name.lower()

    def process(self, session: str) -> dict | None:
        info = self._supervisor.processes().get(session)
        if info is not None:
            info = dict(info, stopping=info["running"] and info["pid"] == self._stopping.get(session))
        return info
