"""Our readers of files that may be being written (issue 20 item 3): the demo's summary,
``nexus-writer show`` and the crash-recovery check read a file while another process
writes it as fast as it can (``file_under_load.py``). Without SWMR they catch it
half-flushed ("address of object past end of allocation", "addr overflow"); the one
retry rule (``io.retry``) reads again, with a bound, and they never fail for it.

The readers run in a child process (``_READER``): HDF5 itself can crash on a file
caught mid-flush, and that must fail one test, not end the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest
from silx.utils.retry import RetryError

from nexus_writer_service.apps import demo, show
from nexus_writer_service.io import retry

LOAD = Path(__file__).parents[1] / "file_under_load.py"

#: calls one reader while the load writes the file, until the retry rule has caught
#: ``min_retries`` half-flushed states and the reader returned 5 times (or the writer is
#: done); prints {"calls", "retries", "error", "damaged"}
_READER = textwrap.dedent("""
    import json, logging, sys
    from pathlib import Path
    from nexus_writer_service.apps import demo, show
    from nexus_writer_service.io import integrity, retry

    kind, path, min_retries, writer_pid = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    retries = []
    handler = logging.Handler()
    handler.emit = lambda record: retries.append(record.getMessage())
    logging.getLogger(retry.__name__).addHandler(handler)
    logging.getLogger(retry.__name__).setLevel(logging.DEBUG)
    read = {"summary": lambda: demo.summary(path.parent),
            "show": lambda: show.show(str(path), depth=1),
            # as salvage runs it: in a child process (HDF5 can crash on a file mid-flush)
            "check": lambda: integrity.check_in_subprocess(str(path))}[kind]
    import os
    def alive():
        try:
            os.kill(writer_pid, 0)
            return open(f"/proc/{writer_pid}/stat").read().split()[2] != "Z"
        except OSError:
            return False
    calls, error, damaged = 0, None, []
    try:
        while alive() and (len(retries) < min_retries or calls < 5):
            out = read()
            calls += 1
            if kind == "check" and (out["open_error"] or any(out["entries"].values())):
                damaged.append(out)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    damaged = [{k: v for k, v in d["entries"].items() if v} or d["open_error"] for d in damaged]
    print(json.dumps({"calls": calls, "retries": len(retries), "error": error, "damaged": damaged[:3]}))
""")


def _under_load(path: Path, kind: str, seconds: float = 20.0, flush_period: float = 0.1,
                min_retries: int = 1) -> dict:
    """One reader (``kind``) called again and again in a child process while another writes
    ``path``; what it saw."""
    writer = subprocess.Popen([sys.executable, str(LOAD), str(path), str(seconds), str(flush_period)],
                              stdout=subprocess.PIPE, text=True)
    try:
        while not path.exists() or path.stat().st_size == 0:
            time.sleep(0.01)
        time.sleep(0.2)
        proc = subprocess.run([sys.executable, "-c", _READER, kind, str(path), str(min_retries), str(writer.pid)],
                              capture_output=True, text=True, timeout=seconds + 60)
    finally:
        writer.kill()
        writer.wait(30)
    assert proc.returncode == 0, f"the reader died (code {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_demo_summary_survives_a_file_being_written(tmp_path):
    seen = _under_load(tmp_path / "data.h5", "summary")
    # the load is real (half-flushed states were met), and every call gave its rows
    assert seen["error"] is None and seen["retries"] >= 1 and seen["calls"] >= 5, seen
    rows = demo.summary(tmp_path)
    assert rows and {r[4] for r in rows[:-1]} == {"SUCCEEDED"}
    assert rows[0] == ("data.h5", "1.1", "loopscan 1", 200, "SUCCEEDED", "SUCCESS")


def test_show_survives_a_file_being_written(tmp_path):
    path = tmp_path / "data.h5"
    seen = _under_load(path, "show")
    assert seen["error"] is None and seen["retries"] >= 1 and seen["calls"] >= 5, seen
    assert "1.1/  NXentry" in [line.strip() for line in show.show(str(path), depth=1).splitlines()]


def test_the_recovery_check_does_not_call_a_file_being_written_damaged(tmp_path):
    # it reads every point of every entry, while the file is written at our writer's pace
    # (a flush every 0.5 s); an entry caught mid-flush is read again until it reads whole
    seen = _under_load(tmp_path / "data.h5", "check", seconds=10.0, flush_period=0.5, min_retries=0)
    assert seen["error"] is None and seen["calls"] >= 5 and seen["damaged"] == [], seen


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
