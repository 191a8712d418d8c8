"""Keeping one session writer process alive per session.

Each session writer is its own process (``NexusSessionWriter``), so a crash in
one session touches no other, and a restarted writer recovers what it missed
(see ``writer.session``). Restarts back off when a writer keeps dying.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

_logger = logging.getLogger("nexus_writer_service.service")

BACKOFF_MIN, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 60.0

_PR_SET_PDEATHSIG = 1
try:  # looked up before any fork: the child only makes one system call
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the service's own stop_all() is all there is
    _prctl = None


def default_log_dir() -> str:
    """Where the session writers log without ``--log-dir``: the user's state folder.

    ``$XDG_STATE_HOME/nexus_writer_service/logs`` (``~/.local/state/...`` by default),
    the XDG place for logs that outlive a run.
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "nexus_writer_service", "logs")


def _die_with_parent(parent: int):
    """In the child, before exec: SIGTERM when the service dies, even by SIGKILL.

    Without it a session writer outlives a killed service (PPID 1) and holds the
    session, so a restarted service could not write it.
    """
    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the service died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return preexec


@dataclass
class SessionSpec:
    name: str
    #: extra NexusSessionWriter options, e.g. ["--base-path", "/data/id00"]
    args: list[str] = field(default_factory=list)
    #: this session's Redis data URL when not the service's (a Tango device's ``redis_url``)
    redis_url: str = ""


@dataclass
class Supervised:
    spec: SessionSpec
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    backoff: float = BACKOFF_MIN
    next_start: float = 0.0
    log_path: str | None = None
    #: stopped on request (the Tango Stop command): not restarted until released
    held: bool = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, specs: list[SessionSpec], redis_url: str, log_level: str = "info",
                 log_dir: str | None = None):
        self.redis_url = redis_url
        self.log_level = log_level
        self.log_dir = log_dir
        self.writers = {s.name: Supervised(s) for s in specs}

    def command(self, spec: SessionSpec) -> list[str]:
        """The writer's command line; the Redis URL goes in its environment (``ps`` shows
        command lines to every user, and the URL may hold a password)."""
        return [sys.executable, "-m", "nexus_writer_service.apps.session_writer", spec.name,
                f"--log={self.log_level}", *spec.args]

    def environment(self, spec: SessionSpec | None = None) -> dict[str, str]:
        return dict(os.environ, REDIS_DATA_URL=(spec.redis_url if spec is not None else "") or self.redis_url)

    def _start(self, w: Supervised) -> None:
        """Start one writer. Call it from a thread that lives as long as the service:
        Linux sends the death signal when the *thread* that forked the child ends."""
        out = subprocess.DEVNULL
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            w.log_path = os.path.join(self.log_dir, f"{w.spec.name}.log")
            out = open(w.log_path, "ab")
        try:
            w.proc = subprocess.Popen(self.command(w.spec), stdout=out, stderr=subprocess.STDOUT,
                                      env=self.environment(w.spec), preexec_fn=_die_with_parent(os.getpid()))
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        w.started = time.monotonic()
        _logger.info("[%s] session writer started (pid %d)", w.spec.name, w.proc.pid)

    def start_all(self) -> None:
        for w in self.writers.values():
            self._start(w)

    def poll(self) -> None:
        """Restart writers that died; call this every fraction of a second."""
        now = time.monotonic()
        for w in self.writers.values():
            if w.held:
                if w.proc is not None and w.proc.poll() is not None:
                    w.last_exit, w.proc = w.proc.returncode, None
                continue
            if w.proc is None:
                if now >= w.next_start:
                    w.restarts += 1
                    self._start(w)
                continue
            code = w.proc.poll()
            if code is None:
                if now - w.started > HEALTHY_AFTER:
                    w.backoff = BACKOFF_MIN
                continue
            w.last_exit = code
            w.proc = None
            w.next_start = now + w.backoff
            _logger.warning("[%s] session writer exited with code %s: restarting in %.0f s",
                            w.spec.name, code, w.backoff)
            w.backoff = min(BACKOFF_MAX, w.backoff * 2)

    def hold(self, name: str) -> None:
        """Stop one session's writer (it finishes its running scans) and keep it stopped."""
        w = self.writers[name]
        w.held = True
        if w.running:
            w.proc.terminate()
            _logger.info("[%s] session writer stopped on request", name)

    def release(self, name: str) -> None:
        """Undo :meth:`hold`: the next :meth:`poll` starts the writer again."""
        w = self.writers[name]
        if w.held:
            w.backoff, w.next_start, w.held = BACKOFF_MIN, 0.0, False

    def stop_all(self, timeout: float = 20.0) -> None:
        for w in self.writers.values():
            if w.running:
                w.proc.terminate()
        deadline = time.monotonic() + timeout
        for w in self.writers.values():
            if w.proc is not None:
                try:
                    w.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait()

    def processes(self) -> dict[str, dict]:
        return {
            name: {"pid": w.proc.pid if w.running else None, "running": w.running,
                   "restarts": w.restarts, "last_exit": w.last_exit, "log": w.log_path, "held": w.held,
                   "uptime": time.monotonic() - w.started if w.running else 0.0}
            for name, w in self.writers.items()
        }
