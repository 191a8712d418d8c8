"""Faults of the world around the writer: Redis restarts, a full disk, garbage input."""

from __future__ import annotations

import collections
import json
import os
import resource
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.recording import (
    ScanRecording, StreamRecording, load_recording, relocate, scaled)
from nexus_writer_service.simulation.redis_server import RedisServer
from nexus_writer_service.simulation.replay import ScanPublisher, publish
from nexus_writer_service.transport.status import StatusReader

DIODE1 = "simulation_diode_sampling_controller:diode1"


def test_redis_restarted_during_a_scan(tmp_path, caplog):
    with RedisServer(persistent=True) as server:
        h = WriterHarness(server.url, tmp_path, caplog)
        try:
            rec = scaled(h.recording("03_ascan"), npoints=20)
            pub = ScanPublisher(h.ds, rec, batch_size=2)
            pub.create().prepare().start()
            pub.send_data(stop_after=10)
            time.sleep(0.5)
            server.restart(downtime=1.5)
            from blissdata.redis_engine.store import DataStore

            pub.resume(DataStore(server.url))  # BLISS reconnects too
            pub.send_data(start_at=10)
            pub.end()
            state = h.state(pub.key)
            published = {n: len(s) for n, s in DataStore(server.url).load_scan(pub.key).streams.items()}
        finally:
            h.stop()
    assert published == {name: 20 for name in published}  # the publisher went on after the restart
    assert f"[{h.session}] [{rec.number} ascan] Redis unreachable (" in caplog.text
    assert state.status == "SUCCEEDED", (state.error, state.warnings)
    with read_file(state.file) as f:
        diode = f[f"{rec.number}.1/measurement/diode1"][()]
    # nothing before the restart lost, nothing after it missed
    assert np.array_equal(diode, rec.stream(DIODE1).data)


def _limit_file_size():
    # a full disk, as the writer sees it: writes beyond 3 MB fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))


def _disk_full_run(redis_server, tmp_path):
    session = "disk_full"
    exe = os.path.join(os.path.dirname(sys.executable), "NexusSessionWriter")
    proc = subprocess.Popen([exe, session, "--redis-url", redis_server.url, "--base-path", str(tmp_path),
                             "--compression", "none", "--log=info"], preexec_fn=_limit_file_size,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening" in proc.stdout.readline()
        from blissdata.redis_engine.store import DataStore

        ds = DataStore(redis_server.url)
        big = scaled(relocate(load_recording("10_loopscan_mca"), tmp_path / "big", session=session), npoints=400)
        small = relocate(load_recording("03_ascan"), tmp_path / "small", session=session)
        # a scan written before the disk fills, in the same file
        before = relocate(load_recording("04_a2scan"), tmp_path / "big", session=session)
        reader = StatusReader(redis_server.url)
        before_state = reader.wait(publish(ds, before), 30)
        assert before_state["status"] == "SUCCEEDED", (before_state["error"], before_state["warnings"])
        big_key = publish(ds, big, batch_size=50)
        small_key = publish(ds, small)
        big_state = reader.wait(big_key, 30)
        small_state = reader.wait(small_key, 30)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    big.before = before
    return big, big_state, small_state, alive, out, proc.returncode


def test_disk_full_fails_that_scan_only(redis_server, tmp_path):
    big, big_state, small_state, alive, out, code = _disk_full_run(redis_server, tmp_path)
    assert alive  # HDF5 crashes a process that closes a file whose writes failed: we do not
    assert big_state["status"] == "FAILED", big_state
    reason = f"file too large for the file system ({big_state['file']}): "
    assert big_state["error"].startswith(reason), big_state["error"]
    assert small_state["status"] == "SUCCEEDED"
    assert f"[{big.number} loopscan] FAILED: {reason}" in out
    assert code == 0  # and it stops cleanly


def test_disk_full_file_stays_readable(redis_server, tmp_path):
    """The file the disk filled up is moved aside; readers find at its path a readable
    file with the failed scan's entry saying FAILED and why (its data are in Redis)."""
    big, big_state, *_, out, code = _disk_full_run(redis_server, tmp_path)
    print(out)  # the writer's log, shown if this fails
    path = big_state["file"]
    with h5py.File(path, "r", locking=False) as f:
        entry = f[f"{big.number}.1"]
        assert entry["title"][()].decode() == big.info_final["title"]
        assert entry["writer/status"][()] == b"FAILED"
        assert entry["writer/error"][()].decode() == big_state["error"]
        before = f[f"{big.before.number}.1"]  # written before the disk filled: intact
        assert before["writer/status"][()] == b"SUCCEEDED"
        assert np.array_equal(before["measurement/diode1"][()],
                              big.before.stream("simulation_diode_sampling_controller:diode1").data)
    aside = [p for p in os.listdir(os.path.dirname(path)) if ".damaged-" in p]
    assert len(aside) == 1, os.listdir(os.path.dirname(path))
    assert "left damaged after failed writes" in out


# -- fuzzing: malformed scan_info and streams never kill the writer -------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
stream_specs = st.lists(
    st.tuples(names, st.sampled_from(["<f8", "<f4", "<i4", "<u2", "|u1"]),
              st.sampled_from([(), (3,), (-1,), (2, 2)]), st.integers(0, 5)),
    min_size=1, max_size=4, unique_by=lambda t: t[0])
info_keys = st.sampled_from(["acquisition_chain", "channels", "devices", "npoints", "npoints1", "npoints2",
                             "data_dim", "plots", "positioners", "title", "start_time", "save",
                             "scan_meta_categories", "instrument", "sample", "comments", "filename"])


def _fuzz_recording(base, session, number, specs, info_updates) -> ScanRecording:
    info = {"title": "fuzz", "save": True, "npoints": 3}
    info.update(info_updates)
    streams = []
    rng = np.random.default_rng(number)
    for name, dtype, shape, n in specs:
        point = tuple(rng.integers(1, 4) if d == -1 else d for d in shape)
        if -1 in shape:
            data = [rng.random(int(rng.integers(1, 5))).astype(dtype) for _ in range(n)]
        else:
            data = (rng.random((n,) + point) * 100).astype(dtype)
            if np.dtype(dtype).kind == "f" and n:
                data.flat[0] = np.nan
        streams.append(StreamRecording(name, {}, {"type": "numeric", "dtype_str": dtype, "shape": list(shape)}, data))
    identity = {"name": "fuzz", "number": number, "data_policy": "None", "session": session,
                "path": str(base / session / "fuzz.h5")}
    return ScanRecording("fuzz", identity, dict(info), dict(info), dict(info), ["CREATED", "PREPARED",
                         "STARTED", "STOPPED", "CLOSED"], streams)


def test_fuzzed_scans_never_kill_the_writer(redis_server, tmp_path, caplog):
    h = WriterHarness(redis_server.url, tmp_path, caplog, stall_timeout=5)
    keys = []
    counter = iter(range(10_000, 20_000))

    @settings(max_examples=int(os.environ.get("NXW_FUZZ_EXAMPLES", "150")), deadline=None,
              suppress_health_check=list(HealthCheck), database=None)
    @given(specs=stream_specs, info=st.dictionaries(info_keys, json_values, max_size=6))
    def one(specs, info):
        rec = _fuzz_recording(tmp_path, h.session, next(counter), specs, json.loads(json.dumps(info)))
        try:
            keys.append(publish(h.ds, rec))
        except (ValueError, TypeError, RuntimeError):
            pass  # blissdata itself refused it: nothing reached Redis

    try:
        one()
        scans = h.states(keys, 120)
        assert keys and all(scans[k].status in ("SUCCEEDED", "FAILED", "INCOMPLETE", "SKIPPED") for k in keys)
        # still alive and writing correct files afterwards
        rec = h.recording("03_ascan", number=1)
        assert h.state(h.publish(rec)).status == "SUCCEEDED"
        with read_file(rec.identity["path"]) as f:
            assert np.array_equal(f["1.1/measurement/diode1"][()], rec.stream(DIODE1).data)
        # nothing was written outside the target folder
        outside = [p for p in tmp_path.parent.rglob("*.h5") if tmp_path not in p.parents]
        assert not [p for p in outside if "fuzz" in p.name]
        # broken scan_info is cleaned at the door: every fuzzed scan is written
        failed = [scans[k].error for k in keys if scans[k].status == "FAILED"]
        assert not failed, collections.Counter(failed).most_common(5)
    finally:
        h.stop()
