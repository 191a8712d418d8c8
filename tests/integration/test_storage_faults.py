"""The storage failing under the writer, through real Redis and a real small disk (tmpfs).

A full disk, files deleted, moved, truncated or replaced while a scan runs, folders made
read-only, viewers holding HDF5's lock: the writer process lives, nothing that was written
is lost at its path, and no scan is called SUCCEEDED while its data are not in the file.
The writer runs as its own process where HDF5 could crash it (a failed write).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.recording import load_recording, relocate, scaled
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.status import StatusReader

MB = 1024**2
DIODE1 = "simulation_diode_sampling_controller:diode1"
SPECTRUM0 = "simu1:spectrum_det0"


# -- a small disk, a writer process ------------------------------------------------------

def fill(disk: Path, leave_mb: float) -> Path:
    """A file that leaves ``leave_mb`` free on ``disk``."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, free - int(leave_mb * MB)))
    return filler


class WriterProcess:
    """``NexusSessionWriter`` as its own process, its output collected line by line."""

    def __init__(self, url: str, session: str, base: Path, *options: str):
        exe = os.path.join(os.path.dirname(sys.executable), "NexusSessionWriter")
        self.proc = subprocess.Popen([exe, session, "--redis-url", url, "--base-path", str(base),
                                      "--compression", "none", "--log=info", *options],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for("listening", 30)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            assert self.proc.poll() is None, f"the writer died ({self.proc.returncode}):\n{self.out}"
            assert time.monotonic() < deadline, f"no {text!r} in the writer's output:\n{self.out}"
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive and os.environ.get("NXW_SPY"):
            spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
            self.lines.append(subprocess.run([spy, "dump", "--pid", str(self.proc.pid)],
                                             capture_output=True, text=True).stdout)
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        return code


def entry_status(path, entry: str) -> str:
    with read_file(path) as f:
        return f[f"{entry}/writer/status"][()].decode()


# -- a full disk ---------------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["entry creation", "mid-append"])
def test_disk_full_inside_hdf5_keeps_process_and_file(redis_server, small_disk, tmp_path, moment):
    """Thresholds off: HDF5 itself hits ENOSPC (creating the entry, or in the middle of an
    MCA scan). The process lives, the file (with a finished entry) stays readable at its
    path, nothing is moved aside without room for a copy, scans to another disk go on;
    once space is back the next scan rebuilds the file: the earlier entry whole, the
    failed one marked FAILED, the new one SUCCEEDED."""
    session = f"full_{moment.replace(' ', '_').replace('-', '_')}"
    writer = WriterProcess(redis_server.url, session, small_disk,
                           "--required-disk-space", "0", "--recommended-disk-space", "0")
    from blissdata.redis_engine.store import DataStore

    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    try:
        before = relocate(load_recording("04_a2scan"), small_disk / "data", session=session)
        assert reader.wait(publish(ds, before), 30)["status"] == "SUCCEEDED"
        path = before.identity["path"]
        filler = fill(small_disk, 3 if moment == "mid-append" else 0)
        big = scaled(relocate(load_recording("10_loopscan_mca"), small_disk / "data", session=session), npoints=400)
        state = reader.wait(publish(ds, big, batch_size=50), 60)
        assert writer.alive
        elsewhere = relocate(load_recording("05_dscan"), tmp_path / "other_disk", session=session)
        assert reader.wait(publish(ds, elsewhere), 30)["status"] == "SUCCEEDED"
        assert state["status"] == "FAILED"
        folder = os.path.dirname(path)
        # h5py's words after ours: OSError mid-append, RuntimeError when the entry is made
        assert re.match(rf"no space left on {re.escape(folder)}: \d+\.\d MB free: (OSError|RuntimeError): .*"
                        r"errno = 28, error message = 'No space left on device'", state["error"], re.S), state["error"]
        # the file stays where it was, readable, with the earlier entry whole
        assert sorted(os.listdir(folder)) == ["data.h5"]
        with read_file(path) as f:
            assert f[f"{before.number}.1/writer/status"][()] == b"SUCCEEDED"
            assert np.array_equal(f[f"{before.number}.1/measurement/diode1"][()], before.stream(DIODE1).data)
        assert f"{path} is not rebuilt now: " in writer.out
        assert f"restarting in place (pid {writer.proc.pid}): HDF5 could not write {path} (no space left on " \
            in writer.out

        os.remove(filler)  # space is back: the next scan to the file rebuilds it first
        after = relocate(load_recording("03_ascan"), small_disk / "data", session=session, number=200)
        assert reader.wait(publish(ds, after), 60)["status"] == "SUCCEEDED"
        aside = [p for p in os.listdir(folder) if p != "data.h5"]
        if moment == "entry creation":  # the entry HDF5 was making does not read: the file is rebuilt
            assert len(aside) == 1 and re.fullmatch(r"data\.damaged-\d{8}-\d{6}\.h5", aside[0]), aside
        else:  # what was written reads: the entry is marked FAILED where it is
            assert aside == []
        with read_file(path) as f:
            assert f[f"{before.number}.1/writer/status"][()] == b"SUCCEEDED"
            assert np.array_equal(f[f"{before.number}.1/measurement/diode1"][()], before.stream(DIODE1).data)
            assert f[f"{big.number}.1/writer/status"][()] == b"FAILED"
            assert f[f"{big.number}.1/writer/error"][()].decode() == state["error"]
            assert "end_time" in f[f"{big.number}.1"]  # readers waiting for it stop waiting
            assert np.array_equal(f[f"{after.number}.1/measurement/diode1"][()], after.stream(DIODE1).data)
    finally:
        code = writer.stop()
        print(writer.out)  # shown when the test fails
    assert code == 0, writer.out


def test_filling_disk_pauses_the_scan_and_loses_nothing(redis_server, small_disk):
    """Below the required free space the scan stops reading before HDF5 fails (its data
    wait in Redis), says why, and goes on once there is room: every point in the file."""
    session = "full_guard"
    writer = WriterProcess(redis_server.url, session, small_disk,
                           "--required-disk-space", "4", "--recommended-disk-space", "0")
    from blissdata.redis_engine.store import DataStore

    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    try:
        filler = fill(small_disk, 6.5)
        big = scaled(relocate(load_recording("10_loopscan_mca"), small_disk / "data", session=session), npoints=400)
        key = publish(ds, big, batch_size=20)  # 6.5 MB of spectra: the disk would fill
        writer.wait_for("nothing is written until there is room; the data wait in Redis", 30)
        time.sleep(1.0)
        assert (reader.scan(key) or {})["status"] == "WRITING"
        os.remove(filler)
        state = reader.wait(key, 60)
        assert writer.alive
        assert state["status"] == "SUCCEEDED", (state["error"], state["warnings"])
        folder = os.path.dirname(big.identity["path"])
        waits = [w for w in state["warnings"] if w.startswith("no space left on")]
        assert len(waits) == 1, state["warnings"]
        assert re.fullmatch(rf"no space left on {re.escape(folder)}: \d+\.\d MB free \(below the required 4 MB\): "
                            r"nothing is written until there is room; the data wait in Redis", waits[0]), waits[0]
        with read_file(big.identity["path"]) as f:
            for det in range(4):
                name = f"simu1:spectrum_det{det}"
                assert np.array_equal(f[f"{big.number}.1/instrument/simu1_det{det}/spectrum"][()],
                                      big.stream(name).data), name
    finally:
        code = writer.stop()
        print(writer.out)  # shown when the test fails
    assert code == 0, writer.out


def test_service_restarts_a_writer_on_a_full_disk_without_a_loop(redis_server, small_disk, tmp_path):
    """A writer killed mid-scan is restarted by the service on a full disk: it writes
    nothing (no refill, no crash loop), says why, and finishes the scan once there is room."""
    from blissdata.redis_engine.store import DataStore
    from nexus_writer_service.service.supervisor import SessionSpec, Supervisor

    session = "full_restart"
    sup = Supervisor([SessionSpec(session, ["--base-path", str(small_disk), "--compression", "none",
                                            "--required-disk-space", "4", "--recommended-disk-space", "0"])],
                     redis_server.url, log_dir=str(tmp_path / "logs"))
    stop = threading.Event()

    def supervise():
        sup.start_all()
        while not stop.is_set():
            sup.poll()
            time.sleep(0.1)
        for w in sup.writers.values():
            if w.proc is not None:
                w.proc.terminate()
                w.proc.wait(30)

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    w = None
    try:
        deadline = time.monotonic() + 30
        while reader.writer(session) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        rec = scaled(relocate(load_recording("03_ascan"), small_disk / "data", session=session), npoints=40)
        pub = ScanPublisher(ds, rec, batch_size=5)
        pub.create().prepare().start()
        pub.send_data(stop_after=20)
        path = rec.identity["path"]
        deadline = time.monotonic() + 30
        while max(((reader.scan(pub.key) or {}).get("written") or {0: 0}).values()) < 20:
            assert time.monotonic() < deadline, reader.scan(pub.key)
            time.sleep(0.1)
        w = sup.writers[session]
        first = w.proc.pid
        filler = fill(small_disk, 2)
        w.proc.kill()  # as a crash would: the service restarts it
        pub.send_data(start_at=20)
        pub.end()
        log = Path(w.log_path)
        deadline = time.monotonic() + 30
        while log.read_text().count("nothing is written until there is room") < 1:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(3)  # long enough for a loop to show
        assert w.running and w.proc.pid != first and w.restarts == 1
        assert reader.scan(pub.key)["status"] == "PENDING"  # taken again, waiting for room to write
        os.remove(filler)
        state = reader.wait(pub.key, 60)
        assert state["status"] == "SUCCEEDED", (state["error"], state["warnings"])
        assert w.restarts == 1
        with read_file(path) as f:
            assert np.array_equal(f[f"{rec.number}.1/measurement/diode1"][()], rec.stream(DIODE1).data)
    finally:
        stop.set()
        thread.join(60)


# -- the file changes under the writer ---------------------------------------------------

def _replace_with_other_hdf5(path: str) -> None:
    other = path + ".other"
    with h5py.File(other, "w") as f:
        f["someone_else"] = np.arange(3)
    os.replace(other, path)


ACTIONS = {
    "deleted": lambda path: os.remove(path),
    "truncated": lambda path: os.truncate(path, 0),
    "replaced": _replace_with_other_hdf5,
    "moved": lambda path: os.rename(path, path.replace("data.h5", "moved.h5")),
    "folder removed": lambda path: shutil.rmtree(os.path.dirname(path)),
}
MOMENTS = {"created": 0, "mid-scan": 20, "all data sent": 40}


def _visible_points(path: str, entry: str) -> int:
    try:
        with read_file(path) as f:
            return len(f[f"{entry}/measurement/diode1"])
    except (OSError, KeyError):
        return -1


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_file_changed_under_the_writer(redis_server, tmp_path, action, moment):
    session = f"changed_{action}_{moment}".replace(" ", "_").replace("-", "_")
    writer = WriterProcess(redis_server.url, session, tmp_path)
    from blissdata.redis_engine.store import DataStore

    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    try:
        before = relocate(load_recording("04_a2scan"), tmp_path / "data", session=session)
        assert reader.wait(publish(ds, before), 30)["status"] == "SUCCEEDED"
        rec = scaled(relocate(load_recording("03_ascan"), tmp_path / "data", session=session), npoints=40)
        path = rec.identity["path"]
        pub = ScanPublisher(ds, rec, batch_size=5)
        pub.create().prepare().start()
        upto = MOMENTS[moment]
        pub.send_data(stop_after=upto)
        deadline = time.monotonic() + 30
        while _visible_points(path, f"{rec.number}.1") != upto:
            assert time.monotonic() < deadline, f"{_visible_points(path, f'{rec.number}.1')} points visible"
            time.sleep(0.05)
        ACTIONS[action](path)
        pub.send_data(start_at=upto)
        pub.end()
        state = reader.wait(pub.key, 60)
        assert writer.alive
        assert state["status"] == "INCOMPLETE", (state["error"], state["warnings"])
        entry = f"{rec.number}.1"
        if action == "moved":
            moved = path.replace("data.h5", "moved.h5")
            assert state["file"] == moved
            assert state["warnings"] == [f"{path}: the file was moved to {moved} while it was written: "
                                         f"the scan's entries are in {moved}"]
            assert not os.path.exists(path)
            with read_file(moved) as f:  # everything is where the file went
                assert np.array_equal(f[f"{entry}/measurement/diode1"][()], rec.stream(DIODE1).data)
                assert f[f"{entry}/writer/status"][()] == b"INCOMPLETE"
                assert f[f"{before.number}.1/writer/status"][()] == b"SUCCEEDED"
            return
        said = {"deleted": "the file was deleted while it was written",
                "folder removed": "the file was deleted while it was written",
                "truncated": "the file was truncated",
                "replaced": "the file was replaced by another file while it was written"}[action]
        rewritten = [w for w in state["warnings"] if w.startswith(f"{path}: {said}")]
        assert len(rewritten) == 1 and rewritten[0].endswith(": the scan is written again from what Redis holds"), \
            state["warnings"]
        assert f"{path}: entries {before.number}.1 were finished in the lost file and are gone with it" \
            in state["warnings"]
        assert state["file"] == path
        with read_file(path) as f:  # written again from Redis: every point
            assert np.array_equal(f[f"{entry}/measurement/diode1"][()], rec.stream(DIODE1).data)
            assert f[f"{entry}/writer/status"][()] == b"INCOMPLETE"
            assert f"{before.number}.1" not in f
            if action == "replaced":  # the other file's content is kept
                assert np.array_equal(f["someone_else"][()], np.arange(3))
        aside = sorted(p for p in os.listdir(os.path.dirname(path)) if ".damaged-" in p)
        assert len(aside) == (1 if action == "truncated" else 0), aside  # never written into
        # the next scan to the path is written as usual
        after = relocate(load_recording("03_ascan"), tmp_path / "data", session=session, number=rec.number + 100)
        assert reader.wait(publish(ds, after), 30)["status"] == "SUCCEEDED"
    finally:
        code = writer.stop()
        print(writer.out)  # shown when the test fails
    assert code == 0, writer.out


def test_folder_made_read_only_fails_the_scan_with_the_reason(redis_server, tmp_path):
    session = "read_only"
    writer = WriterProcess(redis_server.url, session, tmp_path)
    from blissdata.redis_engine.store import DataStore

    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    rec = scaled(relocate(load_recording("03_ascan"), tmp_path / "data", session=session), npoints=40)
    path = rec.identity["path"]
    folder = os.path.dirname(path)
    try:
        pub = ScanPublisher(ds, rec, batch_size=5)
        pub.create().prepare().start()
        pub.send_data(stop_after=20)
        deadline = time.monotonic() + 30
        while _visible_points(path, f"{rec.number}.1") != 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.chmod(path, 0o444)
        os.chmod(folder, 0o555)  # as the data policy closes a dataset
        pub.send_data(start_at=20)
        pub.end()
        state = reader.wait(pub.key, 60)
        assert writer.alive
        assert state["status"] == "FAILED"
        assert re.fullmatch(rf"{re.escape(path)}: the file or its folder {re.escape(folder)} "
                            r"was made read-only while it was written: nothing more written \(\d+ points in the file\)",
                            state["error"]), state["error"]
        with read_file(path) as f:
            assert f[f"{rec.number}.1/writer/status"][()] == b"FAILED"
            assert "end_time" in f[f"{rec.number}.1"]  # readers waiting for it stop waiting
            n = len(f[f"{rec.number}.1/measurement/diode1"])
            assert np.array_equal(f[f"{rec.number}.1/measurement/diode1"][()], rec.stream(DIODE1).data[:n])
        assert f"({n} points in the file)" in state["error"]
    finally:
        os.chmod(folder, 0o755)
        code = writer.stop()
    assert code == 0, writer.out


# -- readers holding HDF5's lock ---------------------------------------------------------

HOLDER = """
import sys, time, h5py
path, hold, gap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
while True:
    with h5py.File(path, "r", locking=True):
        print("holding", flush=True)
        time.sleep(hold)
    time.sleep(gap)
"""


def _holder(path: str, hold: float, gap: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, str(hold), str(gap)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "holding\n"
    return proc


def test_a_reader_retaking_the_lock_never_fails_a_scan(redis_server, tmp_path, caplog):
    h = WriterHarness(redis_server.url, tmp_path, caplog, lock_timeout=1.0, storage_check_period=0.2)
    try:
        first = h.recording("04_a2scan")
        assert h.state(h.publish(first)).status == "SUCCEEDED"
        path = first.identity["path"]
        viewer = _holder(path, hold=2.0, gap=0.2)  # silx/PyMca/h5py with locking, again and again
        try:
            second = h.recording("03_ascan")
            state = h.state(h.publish(second), 60)
        finally:
            viewer.kill()
            viewer.wait()
        assert state.status == "SUCCEEDED", (state.error, state.warnings)
        assert len(state.warnings) == 1, state.warnings
        assert re.fullmatch(rf"{re.escape(path)} is locked by pid {viewer.pid} \(\S+\) \(a reader holding HDF5's "
                            r"file lock\): the scan is written once the reader lets it go; the data wait in Redis",
                            state.warnings[0]), state.warnings[0]
        with read_file(path) as f:
            assert np.array_equal(f[f"{second.number}.1/measurement/diode1"][()], second.stream(DIODE1).data)
    finally:
        h.stop()


def test_a_lock_held_past_the_wait_gives_incomplete_with_the_reason(redis_server, tmp_path, caplog):
    h = WriterHarness(redis_server.url, tmp_path, caplog, lock_timeout=0.5, storage_wait=2.0,
                      storage_check_period=0.2)
    try:
        first = h.recording("04_a2scan")
        assert h.state(h.publish(first)).status == "SUCCEEDED"
        path = first.identity["path"]
        viewer = _holder(path, hold=60.0, gap=0.0)
        try:
            state = h.state(h.publish(h.recording("03_ascan")), 60)
        finally:
            viewer.kill()
            viewer.wait()
        assert state.status == "INCOMPLETE"
        assert re.fullmatch(rf"'{re.escape(path)}' is locked by pid {viewer.pid} \(\S+\) \(.*\): given up after "
                            r"\d+ s; nothing written", state.error), state.error
    finally:
        h.stop()


# -- what scan_info leaves out -----------------------------------------------------------

def test_missing_end_time_is_the_writers_clock(harness):
    rec = harness.recording("03_ascan")
    rec.info_final = {k: v for k, v in rec.info_final.items() if k != "end_time"}
    started = time.time()
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED"
    assert state.warnings == ["scan_info has no end_time: the writer's clock at the end is written"]
    from datetime import datetime

    with read_file(state.file) as f:
        end = datetime.fromisoformat(f[f"{rec.number}.1/end_time"][()].decode()).timestamp()
    assert started - 1 <= end <= time.time() + 1


def test_disk_filling_before_the_final_tree_waits_and_finishes(redis_server, small_disk):
    """Every point written, then the disk fills before the scan ends: the final tree waits
    for room (nothing half-written), and the scan is whole once there is room."""
    session = "full_final"
    writer = WriterProcess(redis_server.url, session, small_disk,
                           "--required-disk-space", "4", "--recommended-disk-space", "0")
    from blissdata.redis_engine.store import DataStore

    ds, reader = DataStore(redis_server.url), StatusReader(redis_server.url)
    try:
        rec = scaled(relocate(load_recording("03_ascan"), small_disk / "data", session=session), npoints=40)
        path = rec.identity["path"]
        pub = ScanPublisher(ds, rec, batch_size=10)
        pub.create().prepare().start()
        pub.send_data()
        deadline = time.monotonic() + 30
        while _visible_points(path, f"{rec.number}.1") != 40:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        filler = fill(small_disk, 2)
        pub.end()
        writer.wait_for("nothing is written until there is room; the data wait in Redis", 30)
        with read_file(path) as f:
            assert "end_time" not in f[f"{rec.number}.1"]  # the final tree waits whole
            assert f[f"{rec.number}.1/writer/status"][()] == b"RUNNING"
        os.remove(filler)
        state = reader.wait(pub.key, 60)
        assert state["status"] == "SUCCEEDED", (state["error"], state["warnings"])
        assert len(state["warnings"]) == 1 and state["warnings"][0].startswith(
            f"no space left on {os.path.dirname(path)}: "), state["warnings"]
        with read_file(path) as f:
            assert np.array_equal(f[f"{rec.number}.1/measurement/diode1"][()], rec.stream(DIODE1).data)
            assert f[f"{rec.number}.1/writer/status"][()] == b"SUCCEEDED"
    finally:
        code = writer.stop()
    assert code == 0, writer.out
