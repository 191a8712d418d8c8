"""Running the writers as an operator does (issue 14 items 10, 13, 14, 19; issue 12 item 6).

Real processes on a real Redis: one writer per session, logs that survive odd scan
names, a stop that says what it leaves unfinished, no orphaned child, and messages that
name what is wrong (Beacon, a dead Redis, where the logs go).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
import pytest

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.redis_server import RedisServer
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.status import SessionTaken, StatusReader
from nexus_writer_service.writer.config import WriterConfig
from nexus_writer_service.writer.session import SessionWriter

BIN = os.path.dirname(sys.executable)
DIODE1 = "simulation_diode_sampling_controller:diode1"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_DATA_URL", "BEACON_HOST")}
    env.update(extra)
    return env


def _start_writer(session, url, base, *args, env=None):
    return subprocess.Popen([os.path.join(BIN, "NexusSessionWriter"), session, "--redis-url", url,
                             "--base-path", str(base), "--log=info", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or _env())


class Lines:
    """A process's output, read in a thread; ``wait_for`` a line holding a text."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text, timeout=20.0, count=1) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} (x{count}) in:\n" + "".join(self.lines))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _stop(proc, timeout=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _short_dir() -> str:
    """A folder for a unix socket (paths are limited to ~100 characters); removed by the test."""
    return tempfile.mkdtemp(prefix="nxw_ops_")


# -- 10. one writer per session ------------------------------------------------------
def test_a_second_writer_for_the_same_session_refuses_to_start(redis_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nexus_writer_service")
    first = WriterHarness(redis_server.url, tmp_path, caplog)
    reader = StatusReader(redis_server.url)
    try:
        holder = reader.writer(first.session)
        # in the same process: refused, naming the live writer
        second = SessionWriter(first.session, redis_server.url, WriterConfig(base_path=str(tmp_path)))
        with pytest.raises(SessionTaken, match=rf"session {first.session}: another writer is running "
                                               rf"\(pid {os.getpid()} on {socket.gethostname()}"):
            second.run()
        # as a process: exit code 3 and one clear line
        proc = _start_writer(first.session, redis_server.url, tmp_path)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 3, out
        assert f"[{first.session}] session {first.session}: another writer is running (pid {os.getpid()}" in out
        assert "not starting a second one" in out and "Traceback" not in out
        # the first writer still owns the session and writes: state and file agree
        assert reader.writer(first.session)["token"] == holder["token"]
        rec = first.recording("03_ascan", number=5)
        state = first.state(first.publish(rec))
        assert state.status == "SUCCEEDED", state
        assert reader.scan(state.key)["written"][DIODE1] == len(rec.stream(DIODE1).data)
        with read_file(state.file) as f:
            assert len(f["5.1/measurement/diode1"]) == len(rec.stream(DIODE1).data)
    finally:
        first.stop()
    assert reader.writer(first.session) is None  # a clean stop frees the session at once

    # a killed writer's claim does not block its restart (same host, its pid is gone)
    proc = _start_writer(first.session, redis_server.url, tmp_path)
    lines = Lines(proc)
    lines.wait_for("listening for scans")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    dead = reader.writer(first.session)  # still there: it expires later
    assert (dead["pid"], dead["host"]) == (proc.pid, socket.gethostname()), dead
    again = _start_writer(first.session, redis_server.url, tmp_path)
    try:
        Lines(again).wait_for("listening for scans", timeout=10)
        assert reader.writer(first.session)["pid"] == again.pid
    finally:
        _stop(again)
    assert again.returncode == 0


# -- 13. the log prefix is never a format string --------------------------------------------
def test_scan_and_session_names_with_percent_signs_keep_their_log_lines(make_harness):
    harness = make_harness()
    rec = harness.recording("03_ascan", number=7)
    rec.identity["name"] = "%s%d%(x)s"
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    text = harness.caplog.text
    tag = f"[{harness.session}] [7 %s%d%(x)s]"
    assert f"{tag} writing 7.1 in {state.file}" in text, text[-3000:]
    assert f"{tag} 7.1: SUCCEEDED (" in text
    assert "Logging error" not in text


# -- 14. a stop names the scans it leaves unfinished ------------------------------------------
def test_sigterm_mid_scan_names_the_unfinished_scans(redis_server, tmp_path):
    session = f"ops_{uuid.uuid4().hex[:6]}"
    from blissdata.redis_engine.store import DataStore

    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    proc = _start_writer(session, redis_server.url, tmp_path)
    lines = Lines(proc)
    lines.wait_for("listening for scans")
    rec = relocate(load_recording("03_ascan"), tmp_path, session=session, number=9)
    pub = ScanPublisher(ds, rec, batch_size=2)
    pub.create().prepare().start()
    pub.send_data(stop_after=3)
    deadline = time.monotonic() + 15
    while max(((reader.scan(pub.key) or {}).get("written") or {}).values(), default=0) < 3:
        assert time.monotonic() < deadline, lines.text
        time.sleep(0.1)
    _stop(proc, 30)
    lines._thread.join(5)
    assert proc.returncode == 0, lines.text
    line = lines.wait_for("unfinished")[0]
    assert f"[{session}] stopped with 1 scan(s) unfinished, resumed by the next start: 9 ascan (WRITING, " in line
    assert rec.identity["path"] in line
    assert lines.text.index("unfinished") < lines.text.index("writer stopped")
    pub.send_data(start_at=3)
    pub.end()


# -- 19. session names are checked first; no child outlives the service -------------------------
def test_invalid_session_names_are_refused_before_anything_starts(redis_server, tmp_path):
    marker = f"ok_{uuid.uuid4().hex[:8]}"
    for bad in ("a/b", "x:y", "../up", "has space", ""):
        out = subprocess.run([os.path.join(BIN, "NexusWriterService"), "--session", marker, "--session", bad, "--redis-url",
                              redis_server.url, "--port", "0", "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=30, env=_env())
        assert out.returncode == 2, out
        assert f"invalid session name {bad!r}" in out.stdout + out.stderr
        assert len((out.stdout + out.stderr).strip().splitlines()) == 1, out
        writer = subprocess.run([os.path.join(BIN, "NexusSessionWriter"), bad, "--redis-url", redis_server.url,
                                 "--base-path", str(tmp_path)], capture_output=True, text=True, timeout=30)
        assert writer.returncode == 2 and f"invalid session name {bad!r}" in writer.stdout, writer
    # nothing was started for the good name either, and nothing was written
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert marker not in ps
    assert not (tmp_path / "logs").exists()
    with pytest.raises(ValueError, match="invalid session name 'a/b'"):
        SessionWriter("a/b", redis_server.url, WriterConfig(base_path=str(tmp_path)))


def test_session_writers_die_with_a_killed_service(redis_server, tmp_path):
    session = f"orphan_{uuid.uuid4().hex[:6]}"
    service = subprocess.Popen([os.path.join(BIN, "NexusWriterService"), "--session", session, "--redis-url",
                                redis_server.url, "--port", "0", "--log-dir", str(tmp_path / "logs")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    lines = Lines(service)
    try:
        lines.wait_for("session writer started")
        reader, deadline = StatusReader(redis_server.url), time.monotonic() + 20
        while reader.writer(session) is None:
            assert time.monotonic() < deadline, lines.text
            time.sleep(0.1)
        child = reader.writer(session)["pid"]
        assert _alive(child)
    finally:
        service.kill()  # SIGKILL: the service cannot clean up
        service.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the session writer outlived its service"
    assert StatusReader(redis_server.url).writer(session) is None  # it stopped cleanly (SIGTERM)


# -- issue 12, item 6: what a new user sees -----------------------------------------------------
def test_service_without_log_dir_logs_to_a_default_folder_and_says_where(redis_server, tmp_path):
    session = f"logs_{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    service = subprocess.Popen([os.path.join(BIN, "NexusWriterService"), "--session", session, "--redis-url",
                                redis_server.url, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_env(XDG_STATE_HOME=str(state)), cwd=tmp_path)
    lines = Lines(service)
    folder = state / "nexus_writer_service" / "logs"
    try:
        assert lines.wait_for("session writer logs in")[0].strip().endswith(f"session writer logs in {folder}")
        log = folder / f"{session}.log"
        deadline = time.monotonic() + 20
        while not (log.exists() and "listening for scans" in log.read_text()):
            assert time.monotonic() < deadline, lines.text
            time.sleep(0.1)
    finally:
        _stop(service)
    assert service.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_beacon_host_pointing_at_nothing_names_beacon_and_the_address(tmp_path):
    address = f"localhost:{_dead_port()}"
    for exe, args in (("NexusSessionWriter", ["s1", "--base-path", str(tmp_path)]),
                      ("NexusWriterService", ["--session", "s1", "--port", "0", "--log-dir", str(tmp_path / "logs")])):
        out = subprocess.run([os.path.join(BIN, exe), *args], capture_output=True, text=True, timeout=60,
                             env=_env(BEACON_HOST=address))
        text = out.stdout + out.stderr
        assert out.returncode == 2, text
        assert f"cannot ask Beacon at BEACON_HOST={address} for the Redis data URL" in text, text
        assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text


def test_session_writer_repeats_its_warning_while_redis_is_dead(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nexus_writer_service")
    folder = _short_dir()
    url = f"unix://{folder}/redis.sock"
    writer = SessionWriter("dead_redis", url, WriterConfig(base_path=str(tmp_path), redis_warning_period=1.0),
                           logging.getLogger("nexus_writer_service"))
    thread = threading.Thread(target=writer.run, daemon=True)
    server = None
    try:
        thread.start()
        time.sleep(3.5)
        warnings = [r.getMessage() for r in caplog.records if "Redis unreachable at" in r.getMessage()]
        assert len(warnings) >= 3, warnings
        assert all(url in w for w in warnings)
        assert not writer.wait_ready(0.1)
        server = RedisServer(workdir=folder).start()
        assert writer.wait_ready(15), caplog.text[-2000:]
        assert "[dead_redis] listening for scans on " + url in caplog.text
        rec = relocate(load_recording("03_ascan"), tmp_path, session="dead_redis", number=3)
        from blissdata.redis_engine.store import DataStore

        publish(DataStore(url), rec)
        deadline = time.monotonic() + 20
        while not writer.scans or next(iter(writer.scans.values())).status != "SUCCEEDED":
            assert time.monotonic() < deadline, caplog.text[-2000:]
            time.sleep(0.1)
        with read_file(rec.identity["path"]) as f:
            assert np.array_equal(f["3.1/measurement/diode1"][()], rec.stream(DIODE1).data)
    finally:
        writer.stop()
        thread.join(15)
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_service_console_says_when_redis_is_dead_and_back(tmp_path):
    folder = _short_dir()
    url = f"unix://{folder}/redis.sock"
    service = subprocess.Popen([os.path.join(BIN, "NexusWriterService"), "--session", "dead_svc", "--redis-url", url,
                                "--port", "0", "--log-dir", str(tmp_path / "logs")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    lines, server = Lines(service), None
    try:
        line = lines.wait_for("is unreachable", timeout=15)[0]
        assert f"Redis at {url} is unreachable" in line and "no scan is written meanwhile" in line
        server = RedisServer(workdir=folder).start()
        lines.wait_for(f"Redis at {url} answers again", timeout=15)
    finally:
        _stop(service)
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert service.returncode == 0


# -- start-time refusals of the writer's own options --------------------------------------------
@pytest.mark.parametrize("template, expected", [
    ("{base_path}/{nope}.h5", "unknown field {nope}"),
    ("{base_path}/{session.__class__}.h5", "unknown field {session.__class__}"),
    ("/etc/{session}.h5", "outside the base path"),
    ("{session}.h5", "gives a relative path"),
])
def test_bad_default_path_template_is_refused_at_start(redis_server, tmp_path, template, expected):
    out = subprocess.run([os.path.join(BIN, "NexusSessionWriter"), "tpl", "--redis-url", redis_server.url,
                          "--base-path", str(tmp_path), "--default-path-template", template],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
    assert expected in out.stdout and len(out.stdout.strip().splitlines()) == 1, out.stdout
    assert list(tmp_path.iterdir()) == []
