"""A session writer as its own process: ours or ESRF's, the way a beamline runs them.

Both are started through their real command line (``NexusSessionWriter``), so the
RSS and CPU time measured are the writer's own and nothing of the benchmark's.

- OURS: ``.venv/bin/NexusSessionWriter SESSION --redis-url URL``. Ready when it
  logs "listening for scans"; a scan is complete when its state in Redis
  (completeness protocol, ``nexus_writer:scan:<key>``) is final, which the writer
  publishes only after the scan's file was released (closed when no other scan of
  the process uses it).
- ESRF: ``.blisswriter_venv/bin/NexusSessionWriter SESSION`` (blisswriter 2.0.0).
  Its command line has no Redis option: ``NexusSessionSubscriber`` takes the URL from
  ``$REDIS_DATA_URL`` and asks Beacon only when that is unset
  (``blisswriter/subscribers/session_subscriber.py``, ``_run``). It listens from the
  last scan that existed when it connected, and logs "Subscribed to Redis" right
  after; a scan is complete when it logs "Finished writing to '<file>'" (after
  ``finalize``; it opens the file per operation, so the file is closed then).

Throughput runs pause the writer (SIGSTOP) once it listens, publish, then resume it
(SIGCONT): the measured time is the writer draining Redis, alone on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import redis

REPO = Path(__file__).resolve().parent.parent
OURS_EXE = REPO / ".venv" / "bin" / "NexusSessionWriter"
ESRF_VENV = Path(os.environ.get("BLISSWRITER_VENV", REPO / ".blisswriter_venv"))
ESRF_EXE = ESRF_VENV / "bin" / "NexusSessionWriter"

FINAL = {"SUCCEEDED", "FAILED", "INCOMPLETE", "SKIPPED"}


class WriterFailed(RuntimeError):
    pass


class WriterProcess:
    """One writer process; ``kind`` is "ours" or "esrf"."""

    READY = {"ours": "listening for scans", "esrf": "Subscribed to Redis"}

    def __init__(self, kind: str, session: str, redis_url: str, workdir: Path, extra_args=()):
        self.kind = kind
        self.session = session
        self.redis_url = redis_url
        self.workdir = Path(workdir)
        self.extra_args = list(extra_args)
        self.log_path = self.workdir / f"{kind}_writer.log"
        self.proc: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None
        self._lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._peak_rss = 0
        self._sampling = threading.Event()
        self._cpu0 = 0.0
        self._cpu_paused = 0.0
        self.cpu_while_paused = 0.0
        self.state_before_resume = ""

    # -- life ------------------------------------------------------------------
    def start(self) -> "WriterProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.kind == "ours":
            cmd = [str(OURS_EXE), self.session, "--redis-url", self.redis_url, "--log=info",
                   "--base-path", str(self.workdir), "--recover-window", "0", *self.extra_args]
        else:
            if not ESRF_EXE.exists():
                raise WriterFailed(f"{ESRF_EXE} missing: run scripts/bench_env.sh")
            env["REDIS_DATA_URL"] = self.redis_url
            env.pop("BEACON_HOST", None)
            cmd = [str(ESRF_EXE), self.session, "--log=INFO", *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=env, text=True, bufsize=1)
        self.ps = psutil.Process(self.proc.pid)
        threading.Thread(target=self._read_output, daemon=True).start()
        threading.Thread(target=self._sample_memory, daemon=True).start()
        return self

    def _read_output(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                now = time.time()
                log.write(line)
                with self._cond:
                    self._lines.append((now, line))
                    self._cond.notify_all()

    def _sample_memory(self) -> None:
        while self.proc.poll() is None:
            try:
                rss = self.ps.memory_info().rss
                for child in self.ps.children(recursive=True):
                    rss += child.memory_info().rss
                self._peak_rss = max(self._peak_rss, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait_lines(self.READY[self.kind], 1, timeout, "did not start listening")

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.time() + 5
        while self._state() != "T" and time.time() < deadline:
            time.sleep(0.01)
        self._cpu_paused = self.cpu_seconds()

    def _state(self) -> str:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                return next(line.split()[1] for line in f if line.startswith("State:"))
        except (OSError, StopIteration):
            return "?"

    def resume(self) -> float:
        """SIGCONT; returns the time it was resumed (the start of a drain).

        ``cpu_while_paused`` says whether the pause held: anything above a few
        hundredths of a second means the writer ran before the clock started.
        """
        self._cpu0 = self.cpu_seconds()
        self.cpu_while_paused = self._cpu0 - self._cpu_paused
        self.state_before_resume = self._state()
        t = time.time()
        os.kill(self.proc.pid, signal.SIGCONT)
        return t

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        # ESRF's process joins a non-daemon listener thread and ignores SIGTERM: kill it
        self.proc.send_signal(signal.SIGTERM if self.kind == "ours" else signal.SIGKILL)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- completion ---------------------------------------------------------------
    def wait_done(self, keys: list[str], idle_timeout: float) -> tuple[float | None, int]:
        """(time the last scan was complete, scans complete); None if some never completed.

        Gives up when no scan completed for ``idle_timeout`` seconds.
        """
        if self.kind == "ours":
            return self._wait_status(keys, idle_timeout)
        return self._wait_finished_lines(len(keys), idle_timeout)

    def _wait_status(self, keys, idle_timeout):
        r = redis.Redis.from_url(self.redis_url)
        names = [f"nexus_writer:scan:{k}" for k in keys]
        done_at: dict[str, float] = {}
        last_progress = time.time()
        while True:
            pending = [n for n in names if n not in done_at]
            if not pending:
                return max(done_at.values()), len(done_at)
            now = time.time()
            for name, raw in zip(pending, r.mget(pending)):
                if raw and json.loads(raw).get("status") in FINAL:
                    done_at[name] = now
                    last_progress = now
            if self.proc.poll() is not None:
                raise WriterFailed(f"our writer exited with {self.proc.returncode} (log {self.log_path})")
            if now - last_progress > idle_timeout:
                return None, len(done_at)
            time.sleep(0.01)

    def _wait_finished_lines(self, count, idle_timeout):
        pattern = "Finished writing to"
        last_progress, seen = time.time(), 0
        while True:
            with self._cond:
                hits = [t for t, line in self._lines if pattern in line]
                if len(hits) >= count:
                    return hits[count - 1], count
                if len(hits) > seen:
                    seen, last_progress = len(hits), time.time()
                if self.proc.poll() is not None:
                    raise WriterFailed(f"ESRF's writer exited with {self.proc.returncode} (log {self.log_path})")
                if time.time() - last_progress > idle_timeout:
                    return None, seen
                self._cond.wait(0.05)

    def _wait_lines(self, pattern: str, count: int, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        with self._cond:
            while sum(pattern in line for _, line in self._lines) < count:
                if self.proc.poll() is not None or time.time() > deadline:
                    tail = "".join(line for _, line in self._lines[-20:])
                    raise WriterFailed(f"{self.kind} writer {what}:\n{tail}")
                self._cond.wait(0.1)

    # -- resources ------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        total = t.user + t.system
        for child in self.ps.children(recursive=True):
            c = child.cpu_times()
            total += c.user + c.system
        return total

    def cpu_since_resume(self) -> float:
        return self.cpu_seconds() - self._cpu0

    def peak_rss_mb(self) -> float:
        """Peak resident memory: the kernel's high-water mark, or our samples if higher."""
        hwm = 0
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) * 1024
        except OSError:
            pass
        return max(hwm, self._peak_rss) / 2**20

    def log_tail(self, n: int = 15) -> str:
        with self._cond:
            return "".join(line for _, line in self._lines[-n:])

    def log_lines(self) -> list[str]:
        with self._cond:
            return [line for _, line in self._lines]
