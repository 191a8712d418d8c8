"""Our readers of files that may be being written (issue 20 item 3): the demo's summary,
``nexus-writer show`` and the crash-recovery check read a file while another process
writes it as fast as it can (``file_under_load.py``). Without SWMR they catch it
half-flushed ("address of object past end of allocation", "addr overflow"); the one
retry rule (``io.retry``) reads again, with a bound, and they never fail for it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from silx.utils.retry import RetryError

from nexus_writer_service.apps import demo, show
from nexus_writer_service.io import integrity, retry

LOAD = Path(__file__).with_name("file_under_load.py")


def _under_load(path: Path, read, caplog, seconds: float = 20.0, flush_period: float = 0.1, min_retries: int = 3):
    """Call ``read()`` while a process writes ``path``, until the retry rule has caught at
    least 3 half-flushed states and ``read`` returned 5 times (or ``seconds``); (calls,
    retries). Any error fails."""
    caplog.set_level(logging.DEBUG, logger=retry.__name__)
    writer = subprocess.Popen([sys.executable, str(LOAD), str(path), str(seconds), str(flush_period)],
                              stdout=subprocess.PIPE, text=True)
    try:
        while not path.exists() or path.stat().st_size == 0:
            time.sleep(0.01)
        time.sleep(0.2)
        calls = 0
        while writer.poll() is None and (_retries(caplog) < min_retries or calls < 5):
            read()
            calls += 1
    finally:
        writer.kill()
        writer.wait(30)
    return calls, _retries(caplog)


def _retries(caplog) -> int:
    return sum("try" in r.getMessage() and r.name == retry.__name__ for r in caplog.records)


def test_the_demo_summary_survives_a_file_being_written(tmp_path, caplog):
    calls, retries = _under_load(tmp_path / "data.h5", lambda: demo.summary(tmp_path), caplog)
    # the load is real (half-flushed states were met), and every call gave its rows
    assert retries >= 3 and calls >= 5, (calls, retries)
    rows = demo.summary(tmp_path)
    assert rows and {r[4] for r in rows[:-1]} == {"SUCCEEDED"}
    assert rows[0] == ("data.h5", "1.1", "loopscan 1", 200, "SUCCEEDED", "SUCCESS")


def test_show_survives_a_file_being_written(tmp_path, caplog):
    path = tmp_path / "data.h5"
    calls, retries = _under_load(path, lambda: show.show(str(path), depth=1), caplog)
    assert retries >= 3 and calls >= 5, (calls, retries)
    assert "1.1/  NXentry" in show.show(str(path), depth=1)


def test_the_recovery_check_does_not_call_a_file_being_written_damaged(tmp_path, caplog):
    path = tmp_path / "data.h5"
    reports = []
    # it reads every point of every entry: flushes every 0.25 s (twice as often as our
    # writer) leave it the time to read the file whole between two of them
    calls, retries = _under_load(path, lambda: reports.append(integrity.check(str(path), timeout=5.0)), caplog,
                                 flush_period=0.25, min_retries=1, seconds=30.0)
    assert retries >= 1, (calls, retries)
    assert all(r["open_error"] is None and not any(r["entries"].values()) for r in reports), \
        [r for r in reports if r["open_error"] or any(r["entries"].values())][:1]


def test_the_retry_rule():
    """What a flush repairs is retried; a missing file, a folder or no permission is not."""
    def h5_error(path):
        try:
            h5py.File(path, "r")
        except Exception as exc:
            return exc

    missing = h5_error("/nonexistent/x.h5")
    assert isinstance(missing, FileNotFoundError) and not retry.transient(missing)
    assert not retry.transient(h5_error("/"))
    assert not retry.transient(ValueError("not from h5py"))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RetryError("half flushed")
        return "read"

    assert retry.call(flaky, period=0.01) == "read" and len(calls) == 3
    calls.clear()
    with pytest.raises(FileNotFoundError):
        retry.call(lambda: calls.append(1) or h5py.File("/nonexistent/x.h5", "r"), period=0.01)
    assert len(calls) == 1  # not retried
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="always"):
        retry.call(lambda: (_ for _ in ()).throw(RetryError("always")), timeout=0.3, period=0.05)
    assert 0.3 <= time.monotonic() - t0 < 2  # bounded
