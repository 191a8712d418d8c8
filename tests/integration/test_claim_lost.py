"""A writer whose session claim was taken stops writing at once (review, writer layer item 1).

After a Redis outage longer than the heartbeat's TTL a second writer may hold the
session. The first one must not go on appending to files the second now resumes:
through real Redis, a scan keeps publishing while writer A loses its claim the way a
second writer takes it, then writer B starts and finishes the scan from A's file.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import numpy as np

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.status import HEARTBEAT_PERIOD, StatusReader, heartbeat_key

DIODE1 = "simulation_diode_sampling_controller:diode1"
LEFT = "left to the writer that took over the session"


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_writer_that_lost_its_claim_stops_appending_and_the_new_one_finishes(redis_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nexus_writer_service")
    a = WriterHarness(redis_server.url, tmp_path, caplog)
    reader = StatusReader(redis_server.url)
    rec = a.recording("03_ascan", number=71)
    expected = rec.stream(DIODE1).data
    assert len(expected) == 6
    pub = ScanPublisher(a.ds, rec, batch_size=1).create().prepare().start()
    b = None
    try:
        pub.send_data(stop_after=2)
        _wait(lambda: (reader.scan(pub.key) or {}).get("written", {}).get(DIODE1) == 2, 10,
              "A wrote the first 2 points")

        # a second writer takes the session, as it may once A's claim expired
        a.ds._redis.set(heartbeat_key(a.session), json.dumps(
            {"session": a.session, "pid": 1, "host": "elsewhere", "started": time.time(),
             "token": uuid.uuid4().hex}))
        a.thread.join(HEARTBEAT_PERIOD + 5)
        assert not a.thread.is_alive(), "A did not stop"
        assert a.writer._pool.wait_idle(0), "A's scan is still running"

        # points go on being published: A appends none of them, and says nothing of them
        pub.send_data(start_at=2, stop_after=4)
        pub.join()
        time.sleep(1.5)  # several of A's read timeouts and flush periods
        record = reader.scan(pub.key)
        assert record["status"] == "WRITING" and record["written"][DIODE1] == 2, record
        with read_file(rec.identity["path"]) as f:  # A closed it: it opens
            assert len(f["71.1/measurement/diode1"]) == 2
            assert f["71.1/writer/status"][()] == b"RUNNING"
        lines = [r.getMessage() for r in caplog.records if LEFT in r.getMessage()]
        assert len(lines) == 1 and "[71 ascan]" in lines[0] and "2 points" in lines[0], lines
        assert "unfinished, resumed by the next start" not in caplog.text

        # B starts once that claim is gone, resumes the scan from A's file and finishes it
        a.ds._redis.delete(heartbeat_key(a.session))
        b = WriterHarness(redis_server.url, tmp_path, caplog, session=a.session)
        pub.send_data(start_at=4)
        pub.end()
        state = b.state(pub.key)
        assert state.status == "SUCCEEDED", state
        assert "resuming 71.1 (2 points already in the file)" in caplog.text
        with read_file(state.file) as f:
            assert np.array_equal(f["71.1/measurement/diode1"][()], expected)  # each point once
            assert f["71.1/writer/status"][()] == b"SUCCEEDED"
        assert reader.scan(pub.key)["written"][DIODE1] == 6
        assert reader.writer(a.session)["token"] == b.writer.status._token
    finally:
        pub.abandon()
        a.stop()
        if b is not None:
            b.stop()


def test_the_claim_is_deleted_only_while_it_holds_what_was_read(redis_server):
    """One script for both deletions: a dead writer's claim (its whole value) and our own
    at a clean stop (our token); neither deletes a claim another writer holds."""
    import os
    import socket
    import subprocess

    import redis

    from nexus_writer_service.transport.status import StatusPublisher

    r = redis.Redis.from_url(redis_server.url)
    session = f"claim_{uuid.uuid4().hex[:6]}"
    key = heartbeat_key(session)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no live process has
    r.set(key, json.dumps({"pid": gone.pid, "host": socket.gethostname(), "token": "dead"}), ex=30)
    mine = StatusPublisher(redis_server.url, session)
    mine.claim()  # the killed writer's claim is taken over at once
    assert json.loads(r.get(key))["token"] == mine._token and json.loads(r.get(key))["pid"] == os.getpid()

    other = json.dumps({"pid": 1, "host": "elsewhere", "token": "theirs"})
    r.set(key, other, ex=30)  # taken by another writer meanwhile
    mine.stop()  # a clean stop frees only its own claim
    assert r.get(key).decode() == other
    r.set(key, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": mine._token}), ex=30)
    mine.claimed = True
    mine.stop()
    assert r.get(key) is None
