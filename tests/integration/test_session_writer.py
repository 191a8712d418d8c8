"""The session writer as users see it: live files, many scans, the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np

from conftest import read_file
from nexus_writer_service.simulation.recording import scaled
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.simulation.synthetic import multi_top_master
from nxvalidation import nexus_errors
from test_fixtures_end_to_end import check_default_plot, check_entry


def test_multi_top_master_scan_gives_one_entry_per_top_master(harness):
    rec = multi_top_master(npoints2=8)
    from nexus_writer_service.simulation.recording import relocate

    rec = relocate(rec, harness.base, session=harness.session)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED"
    assert state.entries == [f"{rec.number}.1", f"{rec.number}.2"]
    with read_file(state.file) as f:
        e1, e2 = f[f"{rec.number}.1"], f[f"{rec.number}.2"]
        assert set(e1["measurement"]) == {"robx", "diode1", "elapsed_time", "epoch"}
        assert set(e2["measurement"]) == {"diode2", "elapsed_time", "epoch"}
        assert np.array_equal(e2["measurement/diode2"][()], rec.stream(
            "simulation_diode_sampling_controller:diode2").data)
        assert e2["measurement/elapsed_time"].shape == (8,)
        assert e1["measurement/elapsed_time"].shape == (6,)
        # both entries are complete entries, with their own plot
        for entry in (e1, e2):
            assert entry["title"][()].decode() == rec.info_final["title"]
            assert entry["writer/status"][()] == b"SUCCEEDED"
            assert "positioners_start" in entry["instrument"]
        assert e2["plotselect"].attrs["signal"] == "diode2"
        assert list(e2["plotselect"].attrs["axes"]) == ["elapsed_time"]
    assert nexus_errors(state.file) == []


READER = """
import sys, time, h5py
path, name, expected, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
end, seen = time.monotonic() + duration, []
while time.monotonic() < end and (not seen or seen[-1] != expected):
    try:
        with h5py.File(path, "r", locking=False) as f:
            seen.append(f[name].shape[0])
    except (OSError, KeyError):
        pass
    time.sleep(0.1)
print(*seen)
"""


def test_datasets_grow_in_the_file_while_the_scan_runs(harness):
    """A reader opening the file without locking sees new points within about a second."""
    rec = scaled(harness.recording("03_ascan"), npoints=40)
    pub = ScanPublisher(harness.ds, rec, batch_size=2).create().prepare().start()
    path = rec.identity["path"]
    entry = f"{rec.number}.1"
    reached = []
    for sent in (10, 20, 30):
        pub.send_data(start_at=sent - 10, stop_after=sent)
        pub.join()
        # a reader in another process, as a user's silx or PyMca would be, until it sees them all
        reader = subprocess.run(
            [sys.executable, "-c", READER, path, f"{entry}/measurement/diode1", str(sent), "15"],
            capture_output=True, text=True, timeout=60,
        )
        seen = [int(x) for x in reader.stdout.split()]
        assert seen == sorted(seen) and set(seen) <= set(range(sent + 1)), seen  # never shrinks nor runs ahead
        reached.append(seen[-1] if seen else None)
    assert reached == [10, 20, 30]  # each step in the file while the scan still runs
    assert harness.writer.scans[pub.key].status == "WRITING"  # (its record while it runs)
    pub.send_data(start_at=30)
    pub.end()
    state = harness.state(pub.key)
    assert state.status == "SUCCEEDED"
    with read_file(path) as f:
        assert np.array_equal(f[f"{entry}/measurement/diode1"][()],
                              rec.stream("simulation_diode_sampling_controller:diode1").data)


def test_concurrent_and_back_to_back_scans_are_all_written(harness):
    slow = [scaled(harness.recording("03_ascan", number=n), npoints=30) for n in (2001, 2002, 2003)]
    pubs = [ScanPublisher(harness.ds, r, batch_size=3, interval=0.1) for r in slow]
    threads = [threading.Thread(target=p.run) for p in pubs]
    for t in threads:
        t.start()
    fast = [harness.recording("13_timescan", number=n) for n in range(2100, 2140)]
    keys = [harness.publish(r) for r in fast]
    for t in threads:
        t.join()
    scans = harness.states(keys + [p.key for p in pubs], 60)
    for key in keys + [p.key for p in pubs]:
        assert scans[key].status == "SUCCEEDED", scans[key]
    path = slow[0].identity["path"]
    with read_file(path) as f:
        assert set(f) == {f"{n}.1" for n in range(2100, 2140)} | {"2001.1", "2002.1", "2003.1"}
        for r in slow + fast:
            check_entry(f, f"{r.number}.1", r)
            check_default_plot(f, f"{r.number}.1", r)


def test_cli_writes_the_session_with_one_log_line_per_scan_event(redis_server, tmp_path):
    from blissdata.redis_engine.store import DataStore
    from nexus_writer_service.simulation.recording import load_recording, relocate
    from nexus_writer_service.simulation.replay import publish

    env = dict(os.environ, REDIS_DATA_URL=redis_server.url)
    exe = os.path.join(os.path.dirname(sys.executable), "NexusSessionWriter")
    proc = subprocess.Popen([exe, "cli_session", "--log=info", "--base-path", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        lines.append(proc.stdout.readline())
        assert "listening" in lines[0], lines
        ds = DataStore(redis_server.url)
        for name in ("33_null_ascan", "14_loopscan_nosave"):
            publish(ds, relocate(load_recording(name), tmp_path, session="cli_session"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("not saved" in x for x in lines):
            lines.append(proc.stdout.readline())
        while time.monotonic() < deadline and not any("SUCCEEDED" in x for x in lines):
            lines.append(proc.stdout.readline())
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    lines += out.splitlines()
    assert proc.returncode == 0
    text = "\n".join(lines)
    path = tmp_path / "cli_session" / "cli_session_nexus.h5"
    assert f"[cli_session] [51 ascan] writing 51.1 in {path}" in text
    assert "[cli_session] [51 ascan] 51.1: SUCCEEDED (6 points, end_reason SUCCESS)" in text
    assert "[cli_session] [3 loopscan] not saved (save=False)" in text
    scan_lines = [x for x in lines if "[51 ascan]" in x]
    assert len(scan_lines) == 2, scan_lines  # start and end: no spam
    with read_file(path) as f:
        assert f["51.1/writer/status"][()] == b"SUCCEEDED"
