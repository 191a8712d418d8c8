"""A writer killed at any moment and started again loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from conftest import WriterHarness
from nexus_writer_service.simulation.recording import load_recording, relocate, scaled
from nexus_writer_service.simulation.replay import ScanPublisher

MIX = ["03_ascan", "07_amesh", "10_loopscan_mca", "13_timescan", "19_ascan_usermeta", "21_ascan_abort",
       "33_null_ascan"]
#: what legitimately differs between two runs
VOLATILE = {"date", "scan_key", "file_time", "file_name", "start_time", "end_time"}


def recordings(base, session, n_scans):
    recs = []
    for i in range(n_scans):
        rec = relocate(load_recording(MIX[i % len(MIX)]), base, session=session, number=100 + i)
        if i % 3 == 0:
            rec = scaled(rec, npoints=40)  # a few longer scans, so kills land mid-scan
        recs.append(rec)
    return recs


def publish_all(ds, recs, interval) -> list[str]:
    return [ScanPublisher(ds, rec, batch_size=2, interval=interval).run() for rec in recs]


def snapshot(path) -> dict:
    """Everything in a file that a user reads, minus what differs between two runs."""
    out = {}

    def visit(name, obj):
        if name.split("/")[-1] in VOLATILE:
            return
        link = obj.parent.get(name.split("/")[-1], getlink=True)
        if isinstance(link, h5py.SoftLink):
            out[name] = ("link", link.path)
            return
        attrs = {k: str(v) for k, v in obj.attrs.items() if k not in VOLATILE}
        if isinstance(obj, h5py.Dataset):
            value = obj[()]
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                value = np.nan_to_num(value, nan=-1e300).tolist()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[name] = ("data", str(value), attrs)
        else:
            out[name] = ("group", attrs)

    with h5py.File(path, "r", locking=False) as f:
        f.visititems(visit)
    return out


def assert_same_files(ref_dir, ref_session, crash_dir, crash_session):
    """Same files, same items, same values (what differs between two runs aside)."""
    ref_files = sorted(p.relative_to(ref_dir) for p in ref_dir.rglob("*.h5"))
    # a file a kill left damaged is kept aside (writer/salvage.py): not part of the result
    crash_files = sorted(p.relative_to(crash_dir) for p in crash_dir.rglob("*.h5") if ".damaged-" not in p.name)
    assert ([str(p).replace(ref_session, "S") for p in ref_files]
            == [str(p).replace(crash_session, "S") for p in crash_files])
    for a, b in zip(ref_files, crash_files):
        expected, got = snapshot(ref_dir / a), snapshot(crash_dir / b)
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        assert not missing and not extra, f"{b}: missing {missing[:10]}, unexpected {extra[:10]}"
        for name in expected:
            assert got[name] == expected[name], f"{b}:{name}"


def start_cli(session, url, base):
    exe = os.path.join(os.path.dirname(sys.executable), "NexusSessionWriter")
    proc = subprocess.Popen([exe, session, "--redis-url", url, "--base-path", str(base), "--log=info"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    while not seen or not ("listening" in seen[-1] or "recovering" in seen[-1]):
        seen.append(proc.stdout.readline())
        if not seen[-1]:
            proc.kill()
            raise AssertionError("the writer did not start:\n" + "".join(seen))
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe flowing
    return proc


def test_sigkill_at_random_moments_loses_nothing(redis_server, tmp_path, caplog):
    """20 SIGKILLs at random moments of a run of mixed scans (some while no writer runs).

    A kill inside an HDF5 flush can damage the file (no journal): the next writer finds it
    (writer/salvage.py), so the files still equal an uninterrupted run's. Other seeds:
    NXW_CRASH_SEED; more kills: NXW_CRASH_KILLS.
    """
    n_kills = int(os.environ.get("NXW_CRASH_KILLS", "20"))
    rng = random.Random(int(os.environ.get("NXW_CRASH_SEED", "20261124")))
    # reference: an uninterrupted writer
    ref = WriterHarness(redis_server.url, tmp_path / "ref", caplog)
    ref_states = ref.states(publish_all(ref.ds, recordings(ref.base, ref.session, 20), interval=0.0), 60)
    assert {s.status for s in ref_states.values()} == {"SUCCEEDED"}, [
        (s.number, s.status, s.warnings) for s in ref_states.values() if s.status != "SUCCEEDED"]
    ref.stop()

    crash_base = tmp_path / "crash"
    session = ref.session + "_crash"
    recs = recordings(crash_base, session, 20)
    proc = start_cli(session, redis_server.url, crash_base)
    publisher = threading.Thread(target=publish_all, args=(ref.ds, recs, 0.15))
    publisher.start()
    kills = 0
    while kills < n_kills and publisher.is_alive():
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        time.sleep(rng.uniform(0.0, 0.5))  # scans may run while no writer is alive
        proc = start_cli(session, redis_server.url, crash_base)
    publisher.join()
    try:
        from nexus_writer_service.transport.status import StatusReader

        reader = StatusReader(redis_server.url)
        deadline = time.monotonic() + 60
        states = []
        while time.monotonic() < deadline:
            states = reader.recent(session, 100)
            if len(states) >= len(recs) and all(s["status"] in ("SUCCEEDED",) for s in states):
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(20)
    assert kills >= min(n_kills, 5), kills
    assert sorted(s["number"] for s in states) == [r.number for r in recs]
    assert {s["status"] for s in states} == {"SUCCEEDED"}, [(s["number"], s["status"], s["error"], s["warnings"]) for s in states if s["status"] != "SUCCEEDED"]

    assert_same_files(ref.base / ref.session, ref.session, crash_base / session, session)


def _wait_written(reader, key, at_least, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = reader.scan(key)
        if state and max((state.get("written") or {}).values(), default=0) >= at_least:
            return state
        time.sleep(0.1)
    raise AssertionError(f"writer did not reach {at_least} points")


def test_sigkill_mid_scan_and_between_scans(redis_server, tmp_path, caplog):
    """Killed while a scan runs and while scans run without it: the restarted writer
    resumes the half-written entry and writes the missed scan; files equal a clean run."""
    from nexus_writer_service.transport.status import StatusReader

    ref = WriterHarness(redis_server.url, tmp_path / "ref", caplog)
    ref.states(publish_all(ref.ds, recordings(ref.base, ref.session, 4), interval=0.0), 60)
    ref.stop()

    base, session = tmp_path / "crash", ref.session + "_crash"
    a, b, c, d = recordings(base, session, 4)
    reader = StatusReader(redis_server.url)
    proc = start_cli(session, redis_server.url, base)
    try:
        publish_all(ref.ds, [a], 0.0)
        assert reader.wait(_key_of(reader, session, a.number), 20)["status"] == "SUCCEEDED"
        pub = ScanPublisher(ref.ds, b, batch_size=2)
        pub.create().prepare().start()
        pub.send_data(stop_after=len(b.streams[0].data) // 2)
        _wait_written(reader, pub.key, len(b.streams[0].data) // 2)
        time.sleep(1.0)  # flushed, idle: the kill does not land inside a flush
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pub.send_data(start_at=len(b.streams[0].data) // 2)
        pub.end()
        publish_all(ref.ds, [c], 0.0)  # runs while no writer is alive
        proc = start_cli(session, redis_server.url, base)
        publish_all(ref.ds, [d], 0.0)
        states = [reader.wait(_key_of(reader, session, r.number), 30) for r in (a, b, c, d)]
    finally:
        proc.terminate()
        proc.wait(20)
    assert [s["status"] for s in states] == ["SUCCEEDED"] * 4, states
    assert_same_files(ref.base / ref.session, ref.session, base / session, session)


def _key_of(reader, session, number, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in reader.recent(session, 100):
            if state.get("number") == number:
                return state["key"]
        time.sleep(0.1)
    raise AssertionError(f"scan {number} never reported")


def _damage(path, obj_path: str) -> None:
    """Overwrite an object's header on disk, as a kill inside a flush can leave it."""
    with h5py.File(path, "r", locking=False) as f:
        addr = h5py.h5o.get_info(f[obj_path].id).addr
    with open(path, "r+b") as raw:
        raw.seek(addr)
        raw.write(b"\xff" * 16)


def test_a_file_left_damaged_is_moved_aside_and_rebuilt_from_what_is_intact_and_redis(
        redis_server, tmp_path, caplog):
    """Deterministic version of what the random kills hit: a file the killed writer had
    open is damaged. The next writer keeps it aside, copies its intact entries back and
    writes the damaged scan again from Redis: the result equals the undamaged file."""
    from nexus_writer_service.transport.status import StatusPublisher

    first = WriterHarness(redis_server.url, tmp_path / "run", caplog)
    a, b = recordings(first.base, first.session, 2)
    states = first.states([first.publish(a), first.publish(b)])
    first.stop()
    assert {s.status for s in states.values()} == {"SUCCEEDED"}
    path = a.identity["path"]
    expected = snapshot(path)
    _damage(path, f"{b.number}.1/instrument")
    # the header overwritten: h5py cannot walk past it
    with pytest.raises(RuntimeError, match=r"^Object visitation failed \(bad object header version number\)$"):
        snapshot(path)
    # what a writer killed with the file open leaves in Redis
    StatusPublisher(redis_server.url, first.session).file_opening(os.path.abspath(path))

    again = WriterHarness(redis_server.url, tmp_path / "run", caplog, session=first.session)
    try:
        rewritten = again.state(next(k for k, s in states.items() if s.number == b.number))
        assert rewritten.status == "SUCCEEDED"
    finally:
        again.stop()
    assert snapshot(path) == expected
    aside = [p for p in os.listdir(os.path.dirname(path)) if ".damaged-" in p]
    assert len(aside) == 1  # kept, never deleted
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "left damaged" in r.getMessage()]
    assert said == [("WARNING", f"{os.path.abspath(path)} was left damaged by a writer that was killed ({b.number}.1: "
                                "RuntimeError: Object visitation failed (bad object header version number)): "
                                f"moved to {aside[0]}; 1 finished entries copied back")], said


def test_sigkill_mid_scan_of_more_channels_than_stay_open(redis_server, tmp_path, caplog):
    """300 counters: more growing datasets than stay open between appends
    (``io.arrays.OPEN_SLOTS``), so the resumed entry's datasets are closed and reopened
    from the moved entry after the restart; the file equals a clean run's."""
    from nexus_writer_service.io.arrays import OPEN_SLOTS
    from nexus_writer_service.transport.status import StatusReader

    def wide(base, session):
        rec = relocate(load_recording("03_ascan"), base, session=session, number=300)
        return scaled(rec, npoints=30, extra_counters=300)

    ref = WriterHarness(redis_server.url, tmp_path / "ref", caplog)
    ref.ds._redis.connection_pool.max_connections = 10_000  # a sink per stream published
    rec = wide(ref.base, ref.session)
    assert sum(s.is_numeric for s in rec.streams) > OPEN_SLOTS.limit
    ref.states(publish_all(ref.ds, [rec], interval=0.0), 120)
    ref.stop()

    base, session = tmp_path / "crash", ref.session + "_crash"
    rec = wide(base, session)
    reader = StatusReader(redis_server.url)
    proc = start_cli(session, redis_server.url, base)
    try:
        pub = ScanPublisher(ref.ds, rec, batch_size=2)
        pub.create().prepare().start()
        half = len(rec.streams[0].data) // 2
        pub.send_data(stop_after=half)
        _wait_written(reader, pub.key, half, timeout=60)
        time.sleep(1.5)  # flushed, idle: the kill does not land inside a flush
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pub.send_data(start_at=half)
        pub.end()
        proc = start_cli(session, redis_server.url, base)
        state = reader.wait(pub.key, 120)
    finally:
        proc.terminate()
        proc.wait(20)
    assert state["status"] == "SUCCEEDED", state
    assert_same_files(ref.base / ref.session, ref.session, base / session, session)
