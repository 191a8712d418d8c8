"""``NexusWriterService [INSTANCE]``: ESRF's Tango device server, with our writers behind it.

As ESRF's command: the Tango server ``SERVER/INSTANCE`` (``--server``, default
``nexuswriter``; instance default ``nexuswriters``) serves every ``NexusWriter`` (and
``BlissWriter``) device registered there and writes each device's session (device
property ``session``), one supervised ``NexusSessionWriter`` process per session.

Without Tango, the sessions named with ``--session`` (repeatable) and/or in ``--config``::

    NexusWriterService --session test_session --session id00 [--config sessions.yml]

``sessions.yml``::

    redis_url: redis://bcu:25002      # optional (else --redis-url, $REDIS_DATA_URL, Beacon)
    port: 8750                         # status page; 0 = any free port, absent = --port
    log_dir: /var/log/nexus_writer     # absent: --log-dir, else ~/.local/state/nexus_writer_service/logs
    allowed_roots: [/data/visitor]     # folders every writer may write in (with its base path)
    sessions:
      - test_session
      - name: id00
        args: ["--base-path", "/data/id00"]

Both serve the status page (``--port``, default 8750; when taken, any free port, said in
the log; ``--port none``: no page).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from .. import __version__, kinds
from ..metadata.config.yamlsource import ConfigError, read
from ..service.supervisor import SessionSpec, Supervisor, default_log_dir
from ..service.plots import PlotSource
from ..service.web import serve
from ..transport.connection import redact_url, resolve_redis_url
from ..transport.status import PlotReader, StatusReader
from ..writer.paths import check_session_name
from . import logconfig

_KEYS = ("redis_url", "port", "sessions", "log_dir", "allowed_roots")
#: while Redis is unreachable the console says so this often (seconds)
REDIS_WARNING_PERIOD = 30.0


def load_config(path: str) -> dict:
    doc = read(path)  # YAML errors name the file and line
    config = doc.data or {}
    if not isinstance(config, dict):
        raise doc.error((), "expected a mapping with 'sessions'")
    for key in config:
        if key not in _KEYS:
            raise doc.error((key,), f"unknown key (expected one of: {', '.join(_KEYS)})")
    return config


def session_specs(names: list[str], config: dict) -> list[SessionSpec]:
    specs = [SessionSpec(n) for n in names]
    for item in config.get("sessions") or []:
        if isinstance(item, str):
            specs.append(SessionSpec(item))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            args = item.get("args") or []
            if not isinstance(args, list):
                raise ConfigError("sessions", None, f"session {item['name']}: 'args' must be a list of options")
            specs.append(SessionSpec(item["name"], [str(a) for a in args]))
        else:
            raise ConfigError("sessions", None, f"{item!r} is neither a name nor a mapping with 'name'")
    seen, unique = set(), []
    for s in specs:
        check_session_name(s.name)  # before any writer starts: a bad one must not orphan others
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique


#: the status page's port without --port (ESRF's tools do not use it)
DEFAULT_PORT = 8750


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="NexusWriterService", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instance", nargs="?", default=None,
                   help="Tango server instance whose devices to serve (default: nexuswriters, "
                        "unless only --session/--config are given: then no Tango)")
    p.add_argument("--server", default="nexuswriter",
                   help="Tango server name (default: %(default)s; BlissWriter for blisswriter 3's devices)")
    p.add_argument("--log_tango", default="WARNING", type=str.upper, choices=logconfig.LEVELS, metavar="LEVEL",
                   help="Tango's own log level (its -v option; default: %(default)s)")
    p.add_argument("--session", action="append", default=[], metavar="NAME",
                   help="also write this BLISS session (repeatable); alone, without Tango")
    p.add_argument("--config", help="YAML file with sessions (and redis_url, port, log_dir, allowed_roots)")
    p.add_argument("--redis-url", help="Redis data URL (default: the device's redis_url, $REDIS_DATA_URL, "
                                       "else Beacon: $BEACON_HOST or the device's beacon_host)")
    p.add_argument("--port", default=str(DEFAULT_PORT),
                   help="status page port; 0: any free one; none: no page (default: %(default)s, "
                        "any free one when taken)")
    p.add_argument("--host", default="127.0.0.1", help="status page address (default: %(default)s)")
    p.add_argument("--log-dir", help="one log file per session writer here "
                                     "(default: ~/.local/state/nexus_writer_service/logs)")
    p.add_argument("--allowed-root", action="append", default=[], metavar="DIR",
                   help="a folder every session writer may write in (repeatable; see NexusSessionWriter)")
    logconfig.add_options(p)
    p.add_argument("--version", action="version", version=f"nexus_writer_service {__version__}")
    return p


def _port(text) -> int | None:
    """``--port`` / ``port:``: a number, or none (no status page)."""
    if text is None or str(text).strip().lower() in ("none", "off", "-1"):
        return None
    try:
        port = int(text)
    except ValueError:
        raise ConfigError("port", None, f"{text!r} is neither a port number nor 'none'") from None
    if not 0 <= port <= 65535:
        raise ConfigError("port", None, f"{port} is not a port number")
    return port


def _serve_page(status, port: int, host: str, plots, log: logging.Logger):
    """The status page on ``port``, else (taken: another service on this host) on any free one."""
    try:
        return serve(status, port, host, plots=plots)
    except OSError as exc:
        if port == 0:
            raise
        log.warning("status page: port %d is taken (%s): using a free one", port, exc.strerror or exc)
        return serve(status, 0, host, plots=plots)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log = logconfig.configure(args)
    tango_mode = args.instance is not None or not (args.session or args.config)
    instance = args.instance or "nexuswriters"
    devices = []
    try:
        config = load_config(args.config) if args.config else {}
        names = list(args.session)
        if tango_mode:  # the sessions of the registered devices (pytango: the [tango] extra)
            try:
                from ..tango.server import hosted_devices  # optional: pytango
            except ImportError as exc:
                raise ConfigError("NexusWriterService", None, f"pytango is missing ({exc}): "
                                  "pip install 'nexus_writer_service[tango]'") from None
            devices = hosted_devices(instance, args.server)
            names += [d.session for d in devices if d.session]
            for d in devices:
                if not d.session:
                    log.error("Tango device %s (%s) has no device property 'session': it stays FAULT",
                              d.name, d.cls)
        specs = session_specs(names, config)
        if not specs and not tango_mode:
            raise ConfigError("NexusWriterService", None, "no session given (--session or --config)")
        roots = list(args.allowed_root) + list(config.get("allowed_roots") or [])
        if not all(isinstance(r, str) for r in roots):
            raise ConfigError("allowed_roots", None, "expected a list of folders")
        for spec in specs:
            spec.args = [a for r in roots for a in ("--allowed-root", r)] + spec.args
        url = _redis_url(args.redis_url or config.get("redis_url"), specs, devices)
        port = _port(config.get("port", args.port))
    except Exception as e:
        log.error("%s", e)
        return 2
    log_dir = args.log_dir or config.get("log_dir") or default_log_dir()
    supervisor = Supervisor(specs, url, args.log.lower(), log_dir)
    where = f" (Tango server {args.server}/{instance})" if tango_mode else ""
    log.info("writing session(s) %s%s; session writer logs in %s",
             ", ".join(s.name for s in specs) or "(none)", where, log_dir)
    for d in devices:
        log.info("Tango device %s (%s) for session %s", d.name, d.cls, d.session or "-")
    reader = StatusReader(url)
    shown_url = redact_url(url)
    #: sessions whose device names its own Redis (``redis_url``) are read there
    readers = {s.name: StatusReader(s.redis_url) for s in specs if s.redis_url}

    def status() -> dict:
        out = {"redis_url": shown_url, "sessions": {}}
        for name, proc in supervisor.processes().items():
            try:
                r = readers.get(name, reader)
                heartbeat, scans = r.writer(name), r.recent(name, 20)
            except Exception as e:  # Redis away: the page says so instead of failing
                heartbeat, scans = None, [{"status": "?", "error": f"Redis: {e}"}]
            out["sessions"][name] = {**proc, "heartbeat": heartbeat, "scans": scans}
        return out

    server = None
    if port is not None:
        try:
            server = _serve_page(status, port, args.host, PlotSource(PlotReader(url), kinds.classify), log)
        except OSError as exc:
            log.error("status page: %s", exc)
            return 2
        log.info("status page on http://%s:%d/", *server.server_address[:2])
    else:
        log.info("no status page (--port none)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    redis_watch = RedisWatch(reader, shown_url, log)
    try:
        supervisor.start_all()
        if tango_mode:  # Tango in this thread until SIGINT/SIGTERM, supervision in another
            # pytango (the [tango] extra): imported only in Tango mode
            from ..tango.options import tango_verbosity
            from ..tango.server import serve_supervised

            failure = serve_supervised(instance, supervisor, stop, args.server, also=redis_watch.poll,
                                       verbosity=tango_verbosity(args.log_tango))
            if failure:  # the Tango server did not start: one line
                log.error("%s", failure)
                return 2
        while not stop.wait(0.5):
            supervisor.poll()
            redis_watch.poll()
    finally:  # whatever happens here, no writer is left behind without its service
        log.info("stopping session writers")
        supervisor.stop_all()
        if server is not None:
            server.shutdown()
    return 0


def _redis_url(given: str | None, specs: list[SessionSpec], devices) -> str:
    """The service's Redis data URL; a device's own ``redis_url`` goes to its session's writer.

    Order: ``--redis-url`` / config, ``$REDIS_DATA_URL``, ``$BEACON_HOST``; else the first
    device's ``redis_url``, else Beacon at its ``beacon_host`` (ESRF's device property)."""
    own = {d.session: d.redis_url for d in devices if d.session and d.redis_url}
    for spec in specs:
        spec.redis_url = own.get(spec.name, "")
    try:
        return resolve_redis_url(given)
    except Exception:
        from ..tango.view import redis_url_for  # Tango mode only (the [tango] extra)

        for d in devices:
            if d.redis_url or d.beacon_host:
                return redis_url_for(d.redis_url, d.beacon_host)
        raise


class RedisWatch:
    """Says on the console when Redis stops answering (repeated while it lasts) and when it is back.

    The writers keep retrying on their own; without this the operator sees a service
    that looks fine while nothing is being written.
    """

    def __init__(self, reader: StatusReader, where: str, log: logging.Logger, period: float = 2.0):
        self.reader, self.where, self.log, self.period = reader, where, log, period
        self._next, self._down_since, self._warned = 0.0, None, 0.0

    def poll(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.period
        problem = self.reader.ping()
        if problem is None:
            if self._down_since is not None:
                self.log.warning("Redis at %s answers again", self.where)
            self._down_since = None
        elif self._down_since is None or now - self._warned >= REDIS_WARNING_PERIOD:
            since = "" if self._down_since is None else f" for {now - self._down_since:.0f} s"
            self.log.warning("Redis at %s is unreachable%s (%s): no scan is written meanwhile",
                             self.where, since, problem)
            self._down_since = self._down_since or now
            self._warned = now


if __name__ == "__main__":
    sys.exit(main())
