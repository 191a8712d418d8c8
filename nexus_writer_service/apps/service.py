"""``NexusWriterService``: the session writers of several BLISS sessions, supervised.

Sessions come from the command line and/or a YAML file::

    redis_url: redis://bcu:25002      # optional (else --redis-url, $REDIS_DATA_URL, Beacon)
    port: 8750                         # status page; 0 = any free port, absent = --port
    log_dir: /var/log/nexus_writer     # absent: --log-dir, else ~/.local/state/nexus_writer_service/logs
    allowed_roots: [/data/visitor]     # folders every writer may write in (with its base path)
    sessions:
      - test_session
      - name: id00
        args: ["--base-path", "/data/id00"]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from ..metadata.config.yamlsource import ConfigError, read
from ..service.supervisor import SessionSpec, Supervisor, default_log_dir
from ..service.plots import PlotSource
from ..service.web import serve
from ..transport.connection import redact_url, resolve_redis_url
from ..transport.status import PlotReader, StatusReader
from ..writer.paths import check_session_name
from .session_writer import setup_logging

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="NexusWriterService", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sessions", nargs="*", help="BLISS sessions to write")
    p.add_argument("--config", help="YAML file with sessions (and redis_url, port)")
    p.add_argument("--redis-url", help="Redis data URL")
    p.add_argument("--port", type=int, default=8750, help="status page port, 0: any free one (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="status page address (default: %(default)s)")
    p.add_argument("--log", default="info", help="log level of the service and its writers")
    p.add_argument("--log-dir", help="one log file per session writer here "
                                     "(default: ~/.local/state/nexus_writer_service/logs)")
    p.add_argument("--allowed-root", action="append", default=[], metavar="DIR",
                   help="a folder every session writer may write in (repeatable; see NexusSessionWriter)")
    p.add_argument("--tango", metavar="INSTANCE", help="also serve the Tango devices of server "
                   "NexusWriterService/INSTANCE (BLISS writer 'nexus'; see RegisterNexusWriter) "
                   "and write their sessions")
    p.add_argument("--tango-server", default="NexusWriterService", help="Tango server name (default: %(default)s)")
    args = p.parse_args(argv)
    setup_logging(args.log)
    log = logging.getLogger("nexus_writer_service")
    try:
        config = load_config(args.config) if args.config else {}
        names = list(args.sessions)
        if args.tango:  # the sessions of the registered devices (pytango: the [tango] extra)
            from ..tango.server import hosted_sessions

            names += hosted_sessions(args.tango, args.tango_server)
        specs = session_specs(names, config)
        if not specs:
            raise ConfigError("NexusWriterService", None, "no session given (command line or --config)")
        roots = list(args.allowed_root) + list(config.get("allowed_roots") or [])
        if not all(isinstance(r, str) for r in roots):
            raise ConfigError("allowed_roots", None, "expected a list of folders")
        for spec in specs:
            spec.args = [a for r in roots for a in ("--allowed-root", r)] + spec.args
        url = resolve_redis_url(args.redis_url or config.get("redis_url"))
    except Exception as e:
        log.error("%s", e)
        return 2
    log_dir = args.log_dir or config.get("log_dir") or default_log_dir()
    supervisor = Supervisor(specs, url, args.log, log_dir)
    log.info("session writer logs in %s", log_dir)
    reader = StatusReader(url)
    shown_url = redact_url(url)

    def status() -> dict:
        out = {"redis_url": shown_url, "sessions": {}}
        for name, proc in supervisor.processes().items():
            try:
                heartbeat, scans = reader.writer(name), reader.recent(name, 20)
            except Exception as e:  # Redis away: the page says so instead of failing
                heartbeat, scans = None, [{"status": "?", "error": f"Redis: {e}"}]
            out["sessions"][name] = {**proc, "heartbeat": heartbeat, "scans": scans}
        return out

    port = config.get("port", args.port)
    server = serve(status, int(port), args.host, plots=PlotSource(PlotReader(url)))
    log.info("status page on http://%s:%d/", *server.server_address[:2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    redis_watch = RedisWatch(reader, shown_url, log)
    try:
        supervisor.start_all()
        if args.tango:  # Tango in this thread until SIGINT/SIGTERM, supervision in another
            from ..tango.server import serve_supervised

            failure = serve_supervised(args.tango, supervisor, stop, args.tango_server,
                                       also=redis_watch.poll)
            if failure:  # the Tango server did not start: one line
                log.error("%s", failure)
                return 2
        while not stop.wait(0.5):
            supervisor.poll()
            redis_watch.poll()
    finally:  # whatever happens here, no writer is left behind without its service
        log.info("stopping session writers")
        supervisor.stop_all()
        server.shutdown()
    return 0


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
