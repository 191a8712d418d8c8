"""The Tango side of ``NexusWriterService [INSTANCE] [--server SERVER]``: the database, the server.

As ESRF's: the Tango server ``SERVER/INSTANCE`` (default ``nexuswriter/nexuswriters``)
serves every device registered there (``RegisterNexusWriter``, or ESRF's own, or
blisswriter 3's ``blisswriter tango register``). The devices are found in the Tango
database with their ``session`` property (and ``redis_url``, ``beacon_host``), so the
service knows which session writers to run; then the server runs in the main thread
(Tango handles SIGINT/SIGTERM there and returns) while the service supervises the
writers in another.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable

import tango
from tango.server import run

from . import hosting
from .bliss_writer import BlissWriter
from .nexus_writer import NexusWriter

#: the Tango server name and instance of ESRF's ``NexusWriterService`` without options
SERVER = "nexuswriter"
INSTANCE = "nexuswriters"
CLASSES = (NexusWriter, BlissWriter)
CLASS_NAMES = tuple(c.__name__ for c in CLASSES)


class TangoSetupError(RuntimeError):
    """No Tango database to talk to: said in one line, the command exits with code 2."""


@dataclass(frozen=True)
class DeviceEntry:
    name: str
    cls: str
    session: str
    server: str
    redis_url: str = ""
    beacon_host: str = ""


def tango_host() -> str:
    """``$TANGO_HOST`` (or what Tango reads from tangorc files), else TangoSetupError."""
    host = os.environ.get("TANGO_HOST") or tango.ApiUtil.get_env_var("TANGO_HOST")
    if not host:
        raise TangoSetupError("TANGO_HOST is not set: export TANGO_HOST=host:port of the Tango database "
                              "(with BLISS: Beacon's --tango-port)")
    return host


def database() -> tango.Database:
    """The Tango database, or TangoSetupError naming the address that did not answer."""
    host = tango_host()
    try:
        db = tango.Database()
        db.get_info()  # the constructor may succeed on a lazy connection
        return db
    except tango.DevFailed as exc:
        raise TangoSetupError(f"cannot reach the Tango database at TANGO_HOST={host}: {reason(exc)}") from None


def reason(exc: tango.DevFailed) -> str:
    """One line from a DevFailed: the first description, the last reason."""
    errors = exc.args
    last = errors[-1] if errors else None
    first = errors[0] if errors else None
    text = (getattr(first, "desc", "") or str(exc)).strip().splitlines()[0]
    if last is not None and last is not first:
        text = f"{text} ({getattr(last, 'reason', '')})"
    return text


def property_value(db: tango.Database, device: str, name: str) -> str:
    values = db.get_device_property(device, name)[name]
    return values[0] if values else ""


def instance_devices(db: tango.Database, instance: str, server: str = SERVER) -> list[DeviceEntry]:
    """Our devices in server ``server/instance``, with their session."""
    full = f"{server}/{instance}"
    out = []
    for cls in CLASS_NAMES:
        for name in db.get_device_name(full, cls):
            out.append(DeviceEntry(name, cls, property_value(db, name, "session"), full,
                                   property_value(db, name, "redis_url"), property_value(db, name, "beacon_host")))
    return out


def session_devices(db: tango.Database, session: str, cls: str = "NexusWriter") -> list[DeviceEntry]:
    """Every device of class ``cls`` (any server) whose ``session`` property is ``session``:
    what BLISS looks for (more than one makes BLISS refuse to choose)."""
    out = []
    for name in db.get_device_name("*", cls):
        if property_value(db, name, "session") == session:
            info = db.get_device_info(name)
            out.append(DeviceEntry(name, cls, session, info.ds_full_name, property_value(db, name, "redis_url"),
                                   property_value(db, name, "beacon_host")))
    return out


#: pytango 9 (BLISS 2.2 and 2.3 pin it): cppTango 9 sets SIGTERM and SIGINT back to their
#: default action and waits for them in a thread of its own, the threads it starts blocking
#: them; a thread started before the server (the status page's) does not, and a signal it
#: receives kills the process on the spot (exit -15: writers not stopped, nothing said).
#: pytango 10 returns from ``run`` instead, as this does on pytango 9 (``_stop_on_signals``).
PYTANGO_9 = tango.__version_info__[0] < 10


def run_server(instance: str, server: str = SERVER, on_ready: Callable[[], None] | None = None,
               verbosity: int = 0) -> None:
    """Serve our devices of ``server/instance`` until SIGINT/SIGTERM (blocks; main thread).

    ``verbosity``: Tango's own ``-vN`` (``--log_tango``; 0: none)."""
    args = [server, instance] + ([f"-v{verbosity}"] if verbosity else [])
    if not PYTANGO_9:
        run(CLASSES, args=args, post_init_callback=on_ready, raises=True)
        return
    with _stop_on_signals(on_ready) as ready:
        run(CLASSES, args=args, post_init_callback=ready, raises=True)


@contextlib.contextmanager
def _stop_on_signals(on_ready: Callable[[], None] | None):
    """pytango 9: SIGTERM and SIGINT stop the server as pytango 10 does (``run`` returns).

    Once Tango is set up (its post-init callback, in the main thread), each signal gets a
    handler again (the caller's, else one that does nothing), which only notes the signal on a
    pipe (``signal.set_wakeup_fd``: whichever thread receives it); a thread reading the pipe
    asks Tango to shut the server down (``DServer.kill``), and ``run`` returns."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    saved: dict = {}

    def watch() -> None:
        try:
            if os.read(read_end, 1):  # b"": the server ended otherwise
                tango.Util.instance().get_dserver_device().kill()
        except (OSError, tango.DevFailed):
            pass
        finally:
            os.close(read_end)

    def ready() -> None:
        for signo in (signal.SIGTERM, signal.SIGINT):
            saved[signo] = signal.getsignal(signo)
            handler = saved[signo] if callable(saved[signo]) else (lambda *args: None)
            signal.signal(signo, handler)
        saved["fd"] = signal.set_wakeup_fd(write_end)
        threading.Thread(target=watch, name="tango-signals", daemon=True).start()
        if on_ready is not None:
            on_ready()

    try:
        yield ready
    finally:
        if "fd" in saved:
            signal.set_wakeup_fd(saved.pop("fd"))
        else:  # Tango never got ready: no watcher
            os.close(read_end)
        os.close(write_end)  # a watcher still reading gets b"" and ends


def hosted_devices(instance: str, server: str = SERVER) -> list[DeviceEntry]:
    """Our devices in ``server/instance``: the service writes their sessions.

    TangoSetupError when there is no database or no such device (one line, exit code 2)."""
    db = database()
    entries = instance_devices(db, instance, server)
    if not entries:
        raise TangoSetupError(f"no NexusWriter or BlissWriter device in Tango server {server}/{instance} "
                              f"(TANGO_HOST={tango_host()}): register one with "
                              f"RegisterNexusWriter SESSION --instance {instance} --server {server}")
    return entries


def serve_supervised(instance: str, supervisor, stop, server: str = SERVER, period: float = 0.5,
                     also: Callable[[], None] | None = None, verbosity: int = 0) -> str | None:
    """Serve the devices here (main thread) while ``supervisor`` is polled (and ``also``
    called) in another thread; return once Tango stops (SIGINT/SIGTERM), with ``stop``
    set: None, or why the server did not start.

    The devices' Start/Stop act on the supervised writers (``hosting``)."""
    def supervise() -> None:
        while not stop.wait(period):
            supervisor.poll()
            if also is not None:
                also()

    hosting.host(hosting.SupervisorControl(supervisor))
    thread = threading.Thread(target=supervise, name="supervisor", daemon=True)
    thread.start()
    try:
        run_server(instance, server, verbosity=verbosity)
        return None
    except tango.DevFailed as exc:
        return f"the Tango server {server}/{instance} did not start: {reason(exc)}"
    finally:
        stop.set()
        thread.join(10)
        hosting.host(None)
