"""The completeness protocol: the writer reports itself and every scan in Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import read_file
from nexus_writer_service.metadata import wait_for_writer, writer_status
from nexus_writer_service.simulation.recording import scaled
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.status import StatusReader


def test_scan_states_are_published_and_match_the_file(harness):
    rec = harness.recording("03_ascan")
    key = harness.publish(rec)
    state = wait_for_writer(key, timeout=20, redis_url=harness.url)
    assert state["status"] == "SUCCEEDED"
    assert state["file"] == rec.identity["path"]
    assert state["entries"] == [f"{rec.number}.1"]
    assert state["written"]["simulation_diode_sampling_controller:diode1"] == 6
    assert state["session"] == harness.session
    with read_file(state["file"]) as f:
        assert f[f"{rec.number}.1/writer/status"][()].decode() == state["status"]
    status = writer_status(harness.session, redis_url=harness.url)
    assert status.alive and status.writer["pid"] == os.getpid()
    assert [s["key"] for s in status.scans] == [key]
    assert "writer alive" in str(status) and "SUCCEEDED" in str(status)


def test_a_running_scan_is_seen_writing_with_its_progress(harness):
    rec = scaled(harness.recording("03_ascan"), npoints=30)
    pub = ScanPublisher(harness.ds, rec, batch_size=2).create().prepare().start()
    pub.send_data(stop_after=10)  # a third of the scan, then the publisher waits
    pub.join()
    reader = StatusReader(harness.url)
    channels = {s.name for s in pub.data_streams()}
    deadline, state = time.monotonic() + 20, None
    while time.monotonic() < deadline:  # progress is published at most once a second
        state = reader.scan(pub.key)
        if state and state["written"] == dict.fromkeys(channels, 10):
            break
        time.sleep(0.1)
    assert state is not None and state["status"] == "WRITING"
    assert state["written"] == dict.fromkeys(channels, 10), state  # every channel, exactly as far as sent
    pub.send_data(start_at=10)
    pub.end()
    with pytest.raises(TimeoutError):
        # a scan still running makes wait_for_writer time out, not lie
        rec2 = scaled(harness.recording("03_ascan", number=rec.number + 1), npoints=30)
        pub2 = ScanPublisher(harness.ds, rec2, batch_size=1, interval=0.2)
        t2 = threading.Thread(target=pub2.run)
        t2.start()
        try:
            while pub2.scan is None:
                time.sleep(0.05)
            time.sleep(0.5)
            wait_for_writer(pub2.key, timeout=0.5, redis_url=harness.url)
        finally:
            t2.join()
    assert wait_for_writer(pub.key, timeout=10, redis_url=harness.url)["status"] == "SUCCEEDED"


def test_a_stopped_writer_is_reported_dead(make_harness):
    h = make_harness()
    assert writer_status(h.session, redis_url=h.url).alive
    h.stop()
    status = writer_status(h.session, redis_url=h.url)
    assert not status.alive
    assert "NO WRITER ALIVE" in str(status)


def test_status_command(make_harness):
    h = make_harness()
    key = h.publish(h.recording("13_timescan"))
    state = h.state(key)
    exe = os.path.join(os.path.dirname(sys.executable), "nexus-writer")
    out = subprocess.run([exe, "status", h.session, "--redis-url", h.url], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    head, *scans = out.stdout.splitlines()
    assert head.startswith(f"session {h.session}: writer alive (pid {os.getpid()} on {socket.gethostname()}, ")
    # number, name, how it was written, how it ended, points, file and entry
    assert scans == [f"  {state.number:>5} timescan       SUCCEEDED  SUCCESS         5 pts  "
                     f"{state.file} {state.number}.1"], out.stdout
    h.stop()
    out = subprocess.run([exe, "status", h.session, "--redis-url", h.url], capture_output=True, text=True)
    assert out.returncode == 1
    assert "NO WRITER ALIVE" in out.stdout


def test_a_running_writer_takes_the_log_level_asked_through_redis(redis_server, tmp_path):
    """The Tango attribute writer_log_level reaches a writer already running (its own
    process, maybe another host) through Redis, within a heartbeat."""
    from nexus_writer_service.transport.status import StatusReader

    session = "log_level_live"
    exe = os.path.join(os.path.dirname(sys.executable), "NexusSessionWriter")
    proc = subprocess.Popen([exe, session, "--redis-url", redis_server.url, "--base-path", str(tmp_path),
                             "--log=warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = StatusReader(redis_server.url)
    try:
        deadline = time.monotonic() + 30
        while reader.writer(session) is None:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        reader.set_log_level(session, "DEBUG")
        line = proc.stdout.readline()  # --log=warning: nothing else is printed before it
        assert line.endswith(f"INFO    [{session}] log level DEBUG (asked through Redis)\n"), line
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        reader.set_log_level(session, "WARNING")
