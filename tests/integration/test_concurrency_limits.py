"""Long or hung scans never stop the others being written (issue 14 item 11).

``max_active_scans`` limits the scans that *work* (create, append, finish); a scan
waiting for Redis gives its slot back (``writer/scheduler.py``). Through real
Redis: scans that never close (data sent, then the publisher goes silent) and
scans that are never prepared, more than there are slots, then a normal scan.
"""

from __future__ import annotations

import time

import numpy as np

from conftest import read_file
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.status import StatusReader

DIODE1 = "simulation_diode_sampling_controller:diode1"


def _hung_scans(harness, numbers, prepared: bool = True) -> list[ScanPublisher]:
    """Scans whose publisher stops early: a few points sent, never sealed, never closed."""
    pubs = []
    for n in numbers:
        pub = ScanPublisher(harness.ds, harness.recording("03_ascan", number=n), batch_size=2).create()
        if prepared:
            pub.prepare().start()
            pub.send_data(stop_after=2)
        pubs.append(pub)
    return pubs


def _elsewhere(rec, path: str):
    """The scan saved in another file (the hung scans keep theirs open in this process)."""
    rec.identity["path"] = path
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        if isinstance(info.get("filename"), str):
            info["filename"] = path
    for s in rec.streams:
        if "file_path" in s.info:
            s.info["file_path"] = path
    return rec


def _written_within(harness, number: int, seconds: float):
    rec = _elsewhere(harness.recording("13_timescan", number=number), str(harness.base / f"later_{number}.h5"))
    t0 = time.monotonic()
    key = harness.publish(rec)
    deadline = t0 + seconds
    reader = StatusReader(harness.url)
    while time.monotonic() < deadline:  # published once its file is released
        if (reader.scan(key) or {}).get("status") == "SUCCEEDED":
            return rec, harness.writer.scans[key], time.monotonic() - t0
        time.sleep(0.05)
    state = harness.writer.scans.get(key)
    raise AssertionError(f"scan {number} not written within {seconds} s: {state}")


def _check(rec, state) -> None:
    with read_file(state.file) as f:
        entry = f[f"{rec.number}.1"]
        assert entry["writer/status"][()] == b"SUCCEEDED"
        assert np.array_equal(entry["measurement/diode1"][()], rec.stream(DIODE1).data)


def test_scans_that_never_close_do_not_block_a_later_scan(make_harness):
    harness = make_harness(max_active_scans=8, stall_timeout=600)
    pubs = _hung_scans(harness, range(3001, 3011))  # 10 hung scans > 8 slots
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # every hung scan has its entry and waits for data
            states = [harness.writer.scans.get(p.key) for p in pubs]
            if all(s is not None and s.status == "WRITING" for s in states):
                break
            time.sleep(0.05)
        assert all(s is not None and s.status == "WRITING" for s in states), states
        rec, state, took = _written_within(harness, 3100, 10)
        _check(rec, state)
        assert took < 10
        # the hung ones are still followed: their points are written (published once a second)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(
                harness.writer.scans[p.key].written.get(DIODE1) == 2 for p in pubs):
            time.sleep(0.1)
        assert all(harness.writer.scans[p.key].written.get(DIODE1) == 2 for p in pubs), \
            [harness.writer.scans[p.key].written for p in pubs]
        assert all(harness.writer.scans[p.key].status == "WRITING" for p in pubs)
    finally:
        for p in pubs:
            p.abandon()


def test_scans_never_prepared_do_not_block_a_later_scan(make_harness):
    harness = make_harness(max_active_scans=2, stall_timeout=600, prepare_timeout=600)
    pubs = _hung_scans(harness, range(3201, 3206), prepared=False)  # 5 > 2 slots
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(p.key in harness.writer.scans for p in pubs):
            time.sleep(0.05)
        assert all(harness.writer.scans[p.key].status == "PENDING" for p in pubs)
        rec, state, _ = _written_within(harness, 3300, 10)
        _check(rec, state)
    finally:
        for p in pubs:
            p.abandon()


def test_threads_are_bounded_and_queued_scans_are_all_written(make_harness, monkeypatch):
    """More scans than threads: they queue (PENDING) and are all written, on at most
    ``max_scan_threads`` scan threads (one thread per scan before: 503 after 500 scans)."""
    import threading

    from nexus_writer_service.writer.scan import ScanWriter

    # the first two queued scans wait for each other: both hold a thread with the hung
    # scan's, so the peak is exactly ``max_scan_threads`` however fast the others finish
    both_running = threading.Barrier(2, timeout=20)
    held, held_lock = [], threading.Lock()
    run = ScanWriter.run

    def run_held(self):
        with held_lock:
            hold = self.state.number != 3401 and len(held) < 2
            if hold:
                held.append(self.state.number)
        if hold:
            both_running.wait()
        return run(self)

    monkeypatch.setattr(ScanWriter, "run", run_held)
    harness = make_harness(max_scan_threads=3, max_active_scans=2)
    hung = _hung_scans(harness, [3401])  # holds one of the 3 threads throughout
    peak = [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], sum(t.name.startswith(f"scan-{harness.session}-") for t in threading.enumerate()))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        recs = [_elsewhere(harness.recording("13_timescan", number=n), str(harness.base / "queued.h5"))
                for n in range(3410, 3440)]
        keys = [harness.publish(r) for r in recs]
        reader = StatusReader(harness.url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # published once the file is released
            if all((reader.scan(k) or {}).get("status") == "SUCCEEDED" for k in keys):
                break
            time.sleep(0.05)
        states = {k: harness.writer.scans.get(k) for k in keys}
        assert all(s is not None and s.status == "SUCCEEDED" for s in states.values()), states
        assert peak[0] == 3, peak[0]
        assert harness.writer._pool.threads <= 3
        with read_file(states[keys[0]].file) as f:
            for r in recs:
                assert np.array_equal(f[f"{r.number}.1/measurement/diode1"][()], r.stream(DIODE1).data)
        assert harness.writer.scans[hung[0].key].status == "WRITING"
    finally:
        stop.set()
        for p in hung:
            p.abandon()


def test_file_work_is_done_only_by_scans_holding_a_slot(make_harness, monkeypatch):
    """Appends, live views and flushes are file work: a scan does them only while it holds
    one of the ``max_active_scans`` slots, so no more than that many do at once, hung
    scans waiting for data included (their flushes ran without a slot before)."""
    import threading

    from nexus_writer_service.io.files import FileHandle
    from nexus_writer_service.writer.scan import ScanWriter
    from nexus_writer_service.writer.streaming import Appender, ReadLoop

    writers, lock = {}, threading.Lock()
    working, peak, unslotted = set(), [0], []
    # the first scan to do file work waits (before taking the file's lock) until another
    # one works too: two at once is then certain, a third would break the limit
    overlap, overlapped = threading.Condition(lock), [False]

    def watched(method, what):
        def call(self, *args, **kwargs):
            writer = self if isinstance(self, ScanWriter) else writers.get(threading.get_ident())
            if writer is None:  # not a scan's thread
                return method(self, *args, **kwargs)
            with lock:
                if not writer.slot.held:
                    unslotted.append((what, writer.state.number))
                working.add(writer)
                peak[0] = max(peak[0], len(working))
                overlap.notify_all()
                if not overlapped[0]:
                    overlap.wait_for(lambda: len(working) >= 2, timeout=10)
                    overlapped[0] = True
            try:
                return method(self, *args, **kwargs)
            finally:
                with lock:
                    working.discard(writer)
        return call

    run = ScanWriter.run

    def run_registered(self):
        writers[threading.get_ident()] = self
        try:
            return run(self)
        finally:
            writers.pop(threading.get_ident(), None)

    monkeypatch.setattr(ScanWriter, "run", run_registered)
    monkeypatch.setattr(Appender, "append", watched(Appender.append, "append"))
    monkeypatch.setattr(ReadLoop, "write_live", watched(ReadLoop.write_live, "live views"))
    monkeypatch.setattr(FileHandle, "flush", watched(FileHandle.flush, "flush"))

    harness = make_harness(max_active_scans=2, stall_timeout=600, flush_period=0.1)
    pubs = _hung_scans(harness, range(3501, 3506))  # 5 scans that wait for data, 2 slots
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                harness.writer.scans.get(p.key) is not None
                and harness.writer.scans[p.key].written.get(DIODE1) == 2 for p in pubs):
            time.sleep(0.1)
        time.sleep(1.0)  # many read timeouts and flush periods of every hung scan
        rec, state, _ = _written_within(harness, 3600, 10)
        _check(rec, state)
        assert all(harness.writer.scans[p.key].written.get(DIODE1) == 2 for p in pubs)
    finally:
        for p in pubs:
            p.abandon()
    assert not unslotted, unslotted[:10]
    assert peak[0] == 2, peak[0]
