"""Smoke check of the real-BLISS tier: Beacon + BLISS 2.2.1 publish scans that our venv's
blissdata can list and read.

Builds nothing: run ``scripts/bliss_env.sh`` first. Then, with the main venv:

    .venv/bin/python tests/realbliss/smoke.py [--bliss-venv DIR] [--writer null|external] [--keep]

It starts Beacon (with its Redis servers) from the BLISS venv, runs ``scans_writer.py``
there, lists the session's scans in the data Redis with ``DataStore.search_existing_scans``
and checks each scan BLISS reported: found, CLOSED, streams sealed at the expected length.
Exit code 0 when all is well.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beacon import DEFAULT_BLISS_VENV, HERE, run_bliss_script, running_beacon  # noqa: E402

SESSION = "test_session"
#: the scans of scans_writer.py this check runs
SCANS = "ct,ascan,amesh,loopscan"


def parse_scan_lines(stdout: str) -> list[dict]:
    return [json.loads(line[5:]) for line in stdout.splitlines() if line.startswith("SCAN ")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bliss-venv", default=str(DEFAULT_BLISS_VENV))
    parser.add_argument("--writer", default="null", choices=["null", "external"])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    from blissdata.redis_engine.scan import ScanState
    from blissdata.redis_engine.store import DataStore

    tmp = Path(tempfile.mkdtemp(prefix="realbliss_smoke_"))
    problems: list[str] = []
    t0 = time.monotonic()
    with running_beacon(tmp, args.bliss_venv) as beacon:
        print(f"[smoke] beacon up at {beacon.host_port} in {time.monotonic() - t0:.1f} s; "
              f"data Redis {beacon.redis_data_url}", flush=True)
        t1 = time.monotonic()
        result = run_bliss_script(HERE / "scans_writer.py", beacon, timeout=args.timeout,
                                  args=[str(tmp / "data"), args.writer, SCANS], cwd=tmp)
        (tmp / "scans_writer.stdout").write_text(result.stdout)
        (tmp / "scans_writer.stderr").write_text(result.stderr)
        print(f"[smoke] scans_writer.py ({args.writer!r} writer) exited {result.returncode} "
              f"in {time.monotonic() - t1:.1f} s", flush=True)
        reported = parse_scan_lines(result.stdout)
        if result.returncode != 0:
            problems.append(f"scans_writer.py exited {result.returncode}")
            print(result.stdout[-3000:])
            print(result.stderr[-5000:], file=sys.stderr)
        if len(reported) != len(SCANS.split(",")):
            problems.append(f"scans_writer.py reported {len(reported)} scans, expected {SCANS}")

        # "?protocol=2": redis-py 8 (our venv) speaks RESP3 by default, and blissdata 2.4.5's
        # search_existing_scans cannot parse RESP3 search replies (KeyError: 0).
        store = DataStore(beacon.redis_data_url + "?protocol=2")
        _, keys = store.search_existing_scans(session=SESSION)
        scans = [store.load_scan(key) for key in keys]
        scans.sort(key=lambda s: s.number)
        by_key = {s.key: s for s in scans}

        print(f"\n[smoke] {len(scans)} scan(s) of session {SESSION!r} in the data Redis:")
        print(f"{'number':>6}  {'name':<9} {'state':<8} {'streams':>7} {'points':>6}  path / title")
        for scan in scans:
            lengths = sorted({len(stream) for stream in scan.streams.values()})
            npoints = scan.info.get("npoints")
            print(f"{scan.number:>6}  {scan.name:<9} {scan.state.name:<8} {len(scan.streams):>7} "
                  f"{npoints!s:>6}  {scan.path or '-'} / {scan.info.get('title')}")
            if scan.state != ScanState.CLOSED:
                problems.append(f"scan {scan.number} is {scan.state.name}, not CLOSED")
            if not scan.streams:
                problems.append(f"scan {scan.number} has no streams")
            elif npoints is not None and lengths != [npoints]:
                problems.append(f"scan {scan.number}: stream lengths {lengths} != npoints {npoints}")

        for line in reported:
            scan = by_key.get(line["key"])
            if scan is None:
                problems.append(f"reported scan {line} not found in Redis")
                continue
            if scan.number != line["number"] or scan.name != line["name"]:
                problems.append(f"reported {line} but Redis has {scan.number} {scan.name}")
            if args.writer == "null" and line["filename"]:
                problems.append(f"writer 'null' but scan {scan.number} names a file")

    print()
    if problems:
        for p in problems:
            print(f"[smoke] PROBLEM: {p}")
        print(f"[smoke] FAILED; logs kept in {tmp}")
        return 1
    print(f"[smoke] OK: {len(reported)} scans run by real BLISS, all found CLOSED in Redis "
          f"({time.monotonic() - t0:.1f} s)")
    if args.keep:
        print(f"[smoke] kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
