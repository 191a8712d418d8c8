"""Shared test fixtures: a real Redis (no mocks) and a session writer per test.

Each test gets its own BLISS session name, so one Redis serves the whole run
while tests stay independent.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from pathlib import Path

import h5py
import pytest
from blissdata.redis_engine.store import DataStore

from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.redis_server import RedisServer
from nexus_writer_service.simulation.replay import publish, publish_sequence
from nexus_writer_service.writer.config import WriterConfig
from nexus_writer_service.writer.session import SessionWriter


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def data_store(redis_server):
    return DataStore(redis_server.url)


class WriterHarness:
    """A running SessionWriter plus helpers to publish recorded scans to it."""

    _numbers = itertools.count(1000)

    def __init__(self, url: str, base: Path, caplog, session: str | None = None, **config):
        self.url = url
        self.base = base
        self.session = session or f"test_{uuid.uuid4().hex[:8]}"
        self.ds = DataStore(url)
        self.caplog = caplog
        cfg = dict(base_path=str(base), read_timeout=0.2, stall_timeout=30, lock_timeout=2)
        cfg.update(config)
        self.writer = SessionWriter(self.session, url, WriterConfig(**cfg),
                                    logging.getLogger("nexus_writer_service"))
        self.thread = threading.Thread(target=self.writer.run, daemon=True)
        self.thread.start()
        assert self.writer.wait_ready(10)

    def recording(self, name: str, number: int | None = None):
        return relocate(load_recording(name), self.base, session=self.session, number=number)

    def publish(self, name_or_rec, **kwargs) -> str:
        rec = self.recording(name_or_rec) if isinstance(name_or_rec, str) else name_or_rec
        return publish(self.ds, rec, **kwargs)

    def publish_sequence(self, parent, children, **kwargs):
        return publish_sequence(self.ds, parent, children, **kwargs)

    def wait(self, timeout: float = 30):
        assert self.writer.wait_idle(timeout), "the writer did not finish in time"
        return self.writer.scans

    def state(self, key: str, timeout: float = 30):
        """The scan's final state, once the listener took it (a reconnecting one is late)."""
        deadline = time.monotonic() + timeout
        while key not in self.writer.scans and time.monotonic() < deadline:
            time.sleep(0.05)
        assert key in self.writer.scans, f"the writer never took scan {key}"
        self.wait(max(1.0, deadline - time.monotonic()))
        return self.writer.scans[key]

    def states(self, keys, timeout: float = 60) -> dict:
        """Final states of these scans, each waited for (the listener may take the last ones late)."""
        deadline = time.monotonic() + timeout
        return {k: self.state(k, max(1.0, deadline - time.monotonic())) for k in keys}

    def stop(self):
        self.writer.stop()
        self.thread.join(10)


@pytest.fixture
def harness(redis_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nexus_writer_service")
    h = WriterHarness(redis_server.url, tmp_path, caplog)
    yield h
    h.stop()


@pytest.fixture
def make_harness(redis_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nexus_writer_service")
    made = []

    def make(**config):
        h = WriterHarness(redis_server.url, tmp_path, caplog, **config)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs: a disk that fills (CI and developers run as root; skipped elsewhere, saying why)."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def read_file(path):
    return h5py.File(path, "r", locking=False)


def start_service(*args: str):
    """``NexusWriterService *args --port 0`` as its own process: (process, status page URL)
    once it says where its page is."""
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "NexusWriterService")
    proc = subprocess.Popen([exe, *args, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    line = ""
    while "status page on" not in line:
        line = proc.stdout.readline()
        assert line, "service did not start"
    return proc, line.split("status page on ")[1].strip()


def start_session_writer(redis_url: str, session: str, base_path, *args: str):
    """``NexusSessionWriter SESSION --log=info --base-path BASE *args`` as its own process,
    once it listens (readers in the tests read its files as another process would)."""
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "NexusSessionWriter")
    writer = subprocess.Popen([exe, session, "--log=info", "--base-path", str(base_path), *args],
                              env=dict(os.environ, REDIS_DATA_URL=redis_url),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = writer.stdout.readline()
    assert "listening" in line, line
    return writer


def wait_for(fn, timeout: float = 30.0):
    """``fn()`` once it is true, or its last value after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
