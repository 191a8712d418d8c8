"""A whole session on one machine: embedded Redis, a replayed BLISS session, our writer.

The writer runs as users run it (``NexusSessionWriter SESSION --log=info`` in its
own process); the scans are real BLISS 2.2.1 scans replayed through blissdata.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py

from ..io import retry
from ..simulation.lima2 import Lima2Detector, add_lima2
from ..simulation.mosca import MoscaDetector, add_mosca
from ..simulation.recording import load_recording, relocate
from ..simulation.redis_server import RedisServer
from ..simulation.replay import publish, publish_sequence
from ..states import from_file
from ..transport.blissdata_api import DataStore

SESSION = "demo_session"
SCANS = ["02_sct", "03_ascan", "04_a2scan", "07_amesh", "10_loopscan_mca", "13_timescan",
         "19_ascan_usermeta", "21_ascan_abort", "25_loopscan_stop", "14_loopscan_nosave",
         "33_null_ascan", "34_null_amesh"]
SEQUENCE = ["26_sequence", "27_sequence_child1", "28_sequence_child2"]


#: the documented beamline configuration (instrument, sample, detector names, plots, techniques)
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "metadata" / "config" / "examples" / "id00.yml"


def start_writer(url: str, base: Path, log_lines: list[str], config: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nexus_writer_service.apps.session_writer", SESSION,
           "--redis-url", url, "--log=info", "--base-path", str(base)]
    if config:
        cmd += ["--config", config]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            log_lines.append(line.rstrip())
            print("  writer |", line.rstrip(), flush=True)
            if "listening" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(30):
        proc.kill()
        raise RuntimeError("the writer did not start")
    return proc


def detector_scans(base: Path) -> list[tuple[str, object]]:
    """Two scans with today's detectors, their files written as the detectors write them:
    an ascan with a Lima2 camera (2 receivers, master file) and a loopscan with a MOSCA MCA."""
    out = []
    for label, fixture, number, add in (
            ("ascan + Lima2 detector", "03_ascan", 101,
             lambda rec, folder: add_lima2(rec, Lima2Detector(receivers=2, frames_per_file=2), folder)),
            ("loopscan + MOSCA MCA", "13_timescan", 102,
             lambda rec, folder: add_mosca(rec, MoscaDetector(detectors=2, channels=64), folder))):
        rec = relocate(load_recording(fixture), base, session=SESSION, number=number)
        path = rec.identity.get("path") or str(base / SESSION / f"{SESSION}_nexus.h5")
        out.append((label, add(rec, str(Path(path).parent / f"scan{number:04d}"))))
    return out


def replay_session(url: str, base: Path) -> int:
    ds = DataStore(url)
    for name in SCANS:
        print(f"  bliss  | {name}", flush=True)
        publish(ds, relocate(load_recording(name), base, session=SESSION), batch_size=2, interval=0.01)
    recs = [relocate(load_recording(n), base, session=SESSION) for n in SEQUENCE]
    print(f"  bliss  | {SEQUENCE[0]} (+2 child scans)", flush=True)
    publish_sequence(ds, recs[0], recs[1:])
    detectors = detector_scans(base)
    for label, rec in detectors:
        print(f"  bliss  | {label}", flush=True)
        publish(ds, rec, batch_size=2, interval=0.01)
    return len(SCANS) + len(SEQUENCE) + len(detectors)


@retry.retried
def summary(base: Path) -> list[tuple]:
    """One row per entry of the files under ``base``: (file, entry, title, points, status,
    end reason). The writer may be writing them: a half-flushed file is read again
    (``io.retry``)."""
    rows = []
    for path in sorted(base.rglob("*.h5")):
        with h5py.File(path, "r", locking=False) as f:
            for name in f:
                entry = f.get(name)
                if entry is None or "title" not in entry:  # being created right now
                    continue
                status = entry.get("writer/status")
                status = from_file(status[()].decode()) if status is not None else "?"
                reason = entry["end_reason"][()].decode() if "end_reason" in entry else "-"
                points = entry.get("writer/points")
                npts = max((int(d[()]) for d in points.values()), default=0) if points else 0
                title = entry["title"][()].decode()
                rows.append((str(path.relative_to(base)), name, title, npts, status, reason))
    return rows


#: the summary, read in a child process: HDF5 itself can crash on a file caught mid-flush
#: (seen: "double free or corruption"), which must not end the demo
_SUMMARY = ("import json, sys; from pathlib import Path; from nexus_writer_service.apps.demo import summary; "
            "print(json.dumps(summary(Path(sys.argv[1]))))")


def summary_in_subprocess(base: Path) -> list[tuple] | None:
    """``summary`` in a child process; None if it failed (a crash, or still half-written
    after the retries)."""
    proc = subprocess.run([sys.executable, "-c", _SUMMARY, str(base)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return [tuple(row) for row in json.loads(proc.stdout.strip().splitlines()[-1])]


def wait_finished(base: Path, expected: int, timeout: float = 60) -> list[tuple]:
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    while True:
        rows = summary_in_subprocess(base) or rows  # the writer is busy with the file: look again
        done = [r for r in rows if r[4] not in ("WRITING", "?")]
        if len(done) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output", default="demo_output", help="folder for the files (default: %(default)s)")
    p.add_argument("--config", default=str(EXAMPLE_CONFIG),
                   help="beamline configuration given to the writer (default: the documented example "
                        "id00.yml; '' for none)")
    args = p.parse_args(argv)
    base = Path(args.output).absolute()
    if base.exists() and any(base.rglob("*.h5")):
        print(f"{base} already holds files: choose another --output (nothing is overwritten)")
        return 2
    base.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []
    with RedisServer() as redis_server:
        print(f"Redis with ReJSON + RediSearch on {redis_server.url}")
        if args.config:
            print(f"Beamline configuration: {args.config}")
        writer = start_writer(redis_server.url, base, log_lines, args.config or None)
        try:
            print(f"Replaying a BLISS session ({SESSION}) ...")
            published = replay_session(redis_server.url, base)
            # saved scans: everything but the save=False loopscan
            rows = wait_finished(base, expected=published - 1)
        finally:
            writer.terminate()
            writer.wait(30)
    print()
    print(f"{'file':36} {'entry':6} {'title':42} {'points':>6} {'status':10} end_reason")
    for file, entry, title, npts, status, reason in rows:
        print(f"{file:36} {entry:6} {title[:42]:42} {npts:6d} {status:10} {reason}")
    ok = sum(r[4] == "SUCCEEDED" for r in rows)
    print(f"\n{len(rows)} entries in {len({r[0] for r in rows})} files under {base}: {ok} SUCCEEDED")
    print("Look at them with: silx view " + " ".join(sorted({str(base / r[0]) for r in rows})))
    return 0 if rows and ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
