"""The logging options of ESRF's ``NexusWriterService`` and ``RegisterNexusWriter``, ours alike.

A beamline's supervisor lines carry them (``--log=info --logfile F ...``); each does what
ESRF's says:

- ``--log LEVEL``: the level of our loggers;
- ``--logfile F``: every message to F too; ``--logfileout F``: those below WARNING;
  ``--logfileerr F``: WARNING and above; files rotate at ``--filesize`` MB (0: never)
  keeping ``--filebackups`` old ones;
- ``--nologstdout``: nothing on stdout (warnings and errors still go to stderr);
- ``--redirectstdout`` / ``--redirectstderr``: what Python code prints goes through the
  logger (into the log files) instead of the raw stream.
"""

from __future__ import annotations

import argparse
import io
import logging
import logging.handlers
import os
import sys

LEVELS = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"]
ROOT = "nexus_writer_service"
FORMAT = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")


def add_options(p: argparse.ArgumentParser, default: str = "INFO") -> None:
    p.add_argument("--log", default=default, type=str.upper, choices=LEVELS, metavar="LEVEL",
                   help=f"log level: {', '.join(LEVELS)} (default: %(default)s)")
    p.add_argument("--logfile", default="", help="also log every message to this file")
    p.add_argument("--logfileout", default="", help="also log messages below WARNING to this file")
    p.add_argument("--logfileerr", default="", help="also log WARNING and above to this file")
    p.add_argument("--filesize", type=float, default=5.0, metavar="MB",
                   help="log files rotate at this size, 0: never (default: %(default)s)")
    p.add_argument("--filebackups", type=int, default=9, metavar="N",
                   help="rotated log files kept (default: %(default)s)")
    p.add_argument("--nologstdout", action="store_true",
                   help="nothing on stdout (warnings and errors still go to stderr)")
    p.add_argument("--redirectstdout", action="store_true", help="what Python prints on stdout goes to the logger")
    p.add_argument("--redirectstderr", action="store_true", help="what Python prints on stderr goes to the logger")


class _Below:
    def __init__(self, level: int):
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def _file(path: str, args: argparse.Namespace) -> logging.Handler:
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    if args.filesize > 0:
        return logging.handlers.RotatingFileHandler(path, maxBytes=int(args.filesize * 1024 ** 2),
                                                    backupCount=max(0, args.filebackups))
    return logging.FileHandler(path)


class _LoggerStream(io.TextIOBase):
    """A text stream whose lines become log records (``--redirectstdout/err``)."""

    def __init__(self, logger: logging.Logger, level: int, original):
        self.logger, self.level, self.original, self._pending = logger, level, original, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.log(self.level, "%s", line)
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self.logger.log(self.level, "%s", self._pending)
        self._pending = ""

    def fileno(self) -> int:  # subprocesses and C code write to the real stream
        return self.original.fileno()


def configure(args: argparse.Namespace) -> logging.Logger:
    """Set up our loggers from the options of :func:`add_options`; returns the top one."""
    stdout, stderr = sys.__stdout__, sys.__stderr__
    handlers: list[logging.Handler] = []
    if args.nologstdout:
        err = logging.StreamHandler(stderr)
        err.setLevel(logging.WARNING)
        handlers.append(err)
    else:  # one stream, in order (what supervisor's log of the program shows)
        handlers.append(logging.StreamHandler(stdout))
    if args.logfile:
        handlers.append(_file(args.logfile, args))
    if args.logfileout:
        out = _file(args.logfileout, args)
        out.addFilter(_Below(logging.WARNING))
        handlers.append(out)
    if args.logfileerr:
        err = _file(args.logfileerr, args)
        err.setLevel(logging.WARNING)
        handlers.append(err)
    root = logging.getLogger(ROOT)
    root.handlers.clear()
    for h in handlers:
        h.setFormatter(FORMAT)
        root.addHandler(h)
    root.setLevel(args.log.upper())
    root.propagate = False
    if args.redirectstdout:
        sys.stdout = _LoggerStream(logging.getLogger(f"{ROOT}.stdout"), logging.INFO, stdout)
    if args.redirectstderr:
        sys.stderr = _LoggerStream(logging.getLogger(f"{ROOT}.stderr"), logging.ERROR, stderr)
    return root
