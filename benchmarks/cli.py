"""``python -m benchmarks``: one run of every scenario, every writer, the bound; table + JSON.

Order of one repeat of a throughput scenario (S1, S1_50k, S2, S3, S5), per writer:

1. start the writer process; wait until it listens; pause it (SIGSTOP);
2. publish the scenario's scans into a session of its own (new file folder);
3. OURS only: time a plain blissdata read of the same streams (bound, child process);
4. resume the writer (SIGCONT) and time until every scan is complete (see writers.py);
5. read its CPU time and peak RSS, stop it, check the file (verify.py);
6. OURS only: time plain h5py appends with the same chunks/filters (bound, child process);
7. empty Redis.

S4 is live: the writer runs while the scan is published at 10 kHz, and a reader
process samples the file (lag.py). S3_live too: the writer runs while S3's 200 scans
are published one after the other, as BLISS publishes them; its figure is the
writer's CPU time per scan (the wall time is the publisher's). S2_live and S2_1000_live
run the same way (one MCA scan published as fast as the replayer goes while the writer
runs); their figure is the time from the first publication to the file complete, against
the floor: max(the publisher's time, a plain uncompressed read + write of the data).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import redis
from blissdata.redis_engine.store import DataStore

from nexus_writer_service.simulation.lima import LIMA_DATA_PATH
from nexus_writer_service.simulation.lima2 import receiver_frames
from nexus_writer_service.simulation.redis_server import RedisServer
from nexus_writer_service.vds_mapping import VdsMapping

from . import report
from .bound import mapping_record
from .lag import lag_stats
from .publishing import data_store, publish_all, publish_paced
from .scenarios import (LazyData, Scenario, build, data_streams, forget_detector_files, lima2_detector,
                        lima_detector, mosca_detector, scenarios)
from .verify import describe, verify
from .writers import ESRF_EXE, REPO, WriterFailed, WriterProcess

ORDER = ["S1", "S1_50k", "S2", "S2_1", "S2_1000", "S2_live", "S2_1000_live", "S3", "S3_live", "S4", "S5", "S6", "S6_25k", "S7", "S7_5k", "S8"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, args, server: RedisServer, root: Path):
        self.args = args
        self.url = server.url
        self.root = root
        self.idle_timeout = 30.0 if args.quick else 120.0

    # -- helpers ------------------------------------------------------------------------
    def _child(self, *argv) -> dict:
        out = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{argv[:2]} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def _flush(self) -> None:
        r = redis.Redis.from_url(self.url)
        r.flushall()
        DataStore(self.url, init_db=True)

    def _session(self, sc: Scenario, kind: str, repeat: int) -> tuple[str, Path]:
        session = f"bench_{sc.name.lower()}_{kind}_{repeat}_{uuid.uuid4().hex[:4]}"
        return session, self.root / f"{sc.name}-{repeat}-{kind}"

    @staticmethod
    def _check_files(rec: dict, recs: list, keys: list, t1, done: int) -> dict:
        """Every point of the written files checked (``rec``: size, check, ok)."""
        v = verify(recs[0].identity["path"], recs)
        rec["size_mb"] = v["size_mb"]
        rec["check"] = describe(v)
        if t1 is None:
            rec["check"] = f"{done}/{len(keys)} scans finished; " + rec["check"]
        rec["ok"] = bool(v["ok"] and t1 is not None)
        return v

    # -- one writer on one throughput scenario -------------------------------------------
    def drain(self, sc: Scenario, kind: str, repeat: int) -> list[dict]:
        session, wdir = self._session(sc, kind, repeat)
        rec = {"scenario": sc.name, "writer": kind, "repeat": repeat, "ok": False}
        records = [rec]
        w = WriterProcess(kind, session, self.url, wdir, self.args.writer_args.get(kind, ()))
        try:
            w.start()
            w.wait_ready()
            w.pause()
            recs = build(sc, wdir / "data", session, images_dir=wdir / "lima",
                         detector_dir=self.root / "detector_files" / sc.name)
            keys, rec["publish_s"] = publish_all(data_store(self.url), recs, sc)
            read = None
            if kind == "ours" and sc.compare:
                read = self._child("benchmarks.bound", "read", self.url, *keys)
            os.sync()  # dirty pages of earlier runs must not slow this one's writes
            t0 = w.resume()
            rec["cpu_while_paused"] = w.cpu_while_paused
            spy = self._profile(sc, kind, repeat, w)
            t1, done = w.wait_done(keys, self.idle_timeout)
            self._stop_profile(spy)
            rec["cpu_s"] = w.cpu_since_resume()
            rec["rss_mb"] = w.peak_rss_mb()
            w.stop()
            v = self._check_files(rec, recs, keys, t1, done)
            if t1 is not None:
                rec["seconds"] = t1 - t0
                rec["per_scan_ms"] = rec["seconds"] / len(keys) * 1000
            if w.cpu_while_paused > 0.05 or w.state_before_resume != "T":
                rec["ok"] = False  # it wrote before the clock started: no figure
                rec["check"] = (f"pause did not hold (state {w.state_before_resume}, "
                                f"{w.cpu_while_paused:.2f} s CPU while paused); " + rec["check"])
            if read is not None:
                records.append(self._bound(sc, repeat, recs, v, wdir, read))
        except (WriterFailed, RuntimeError) as e:
            rec["check"] = f"error: {str(e).splitlines()[0]}"
            log(f"{sc.name} {kind}: {e}")
        finally:
            w.stop()
            self._flush()
        return records

    def _profile(self, sc: Scenario, kind: str, repeat: int, w: WriterProcess):
        """py-spy on our writer while it drains or follows live scans (``--profile``): collapsed stacks, all threads."""
        if not self.args.profile or kind != "ours":
            return None
        out = Path(self.args.profile) / f"{sc.name}-{repeat}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(w.proc.pid),
                                "--rate", "250", "--format", "raw", "--threads", "--output", str(out),
                                *(["--gil"] if os.environ.get("NXW_PROFILE_GIL") else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)  # attached before the writer has much to do
        return spy

    @staticmethod
    def _stop_profile(spy) -> None:
        """py-spy writes its stacks when interrupted."""
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)

    def _bound(self, sc: Scenario, repeat: int, recs: list, v: dict, wdir: Path, read: dict) -> dict:
        plan = {"batch": sc.batch, "out": str(wdir / "bound.h5"), "reference": v["path"], "datasets": [],
                # the floor of S2_live: the same chunks, no filter at all
                "plain": sc.floor}
        expected = 0
        for r in recs:
            entry = f"{r.number}.1"
            for s in data_streams(r):
                d = {"entry": entry, "dtype": s.encoding["dtype_str"], "point_shape": list(s.encoding["shape"]),
                     "npoints": len(s.data), "ref": v["datasets"].get(f"{entry}:{s.name}")}
                if isinstance(s.data, LazyData):
                    d.update(kind="lazy", seed=s.data.seed)
                else:
                    d.update(kind="roi")
                plan["datasets"].append(d)
                expected += len(s.data)
            for s in r.streams:
                if s.info.get("plugin") == "lima":
                    det = lima_detector()
                    nframes = max(len(x.data) for x in r.streams if x.is_numeric)
                    plan["lima"] = {"files": sorted(glob.glob(str(wdir / "lima" / "*.h5"))),
                                    "data_path": LIMA_DATA_PATH, "nframes": nframes,
                                    "frames_per_file": det.frames_per_file, "shape": list(det.shape),
                                    "dtype": det.dtype}
                    expected += len(s.data)  # statuses read from Redis
        plan["vds"] = self._detector_vds(sc, recs)
        plan_path = wdir / "bound_plan.json"
        plan_path.write_text(json.dumps(plan))
        write = self._child("benchmarks.bound", "write", str(plan_path))
        ok = read["points"] >= expected
        return {"scenario": sc.name, "writer": "bound", "repeat": repeat, "ok": ok,
                "check": "ok" if ok else f"read {read['points']} of {expected} points",
                "seconds": read["seconds"] + write["seconds"], "read_s": read["seconds"],
                "write_s": write["seconds"], "write_pub_batch_s": write["write_pub_batch_s"],
                "size_mb": write["size_mb"], "filters": write["filters"], "per_scan_ms": (read["seconds"] + write["seconds"]) / len(recs) * 1000}

    def _detector_vds(self, sc: Scenario, recs: list) -> list[dict]:
        """S6/S7: the virtual datasets plain h5py makes over the same detector files."""
        out = []
        folder = str(self.root / "detector_files" / sc.name)
        for r in recs:
            for s in r.streams:
                plugin = s.info.get("plugin")
                n = r.saved_points.get(s.name, 0)
                if plugin == "lima2":
                    det = lima2_detector(sc)
                    sources = []
                    for rank in range(det.receivers):
                        for index in range(-(-len(range(rank, n, det.receivers)) // det.frames_per_file)):
                            frames = receiver_frames(det, n, rank, index)
                            sources.append(mapping_record(VdsMapping(
                                frames, det.receiver_file(folder, rank, index), det.data_path,
                                np.arange(len(frames)), (len(frames), *det.frame_shape))))
                    out.append({"shape": [n, *det.frame_shape], "dtype": det.dtype, "sources": sources})
                elif plugin == "mosca":
                    det = mosca_detector(sc)
                    alias, ppf = int(s.info["detector"]), det.points_per_file
                    sources = [mapping_record(VdsMapping.run(
                        start, min(ppf, n - start), det.spectra_file(folder, k), f"{det.data_path}/spectra_{alias:02d}",
                        0, (min(ppf, n - start), det.channels))) for k, start in enumerate(range(0, n, ppf))]
                    out.append({"shape": [n, det.channels], "dtype": det.dtype, "sources": sources})
        return out

    # -- S3_live: scans published one after the other while the writer runs --------------
    def live_scans(self, sc: Scenario, kind: str, repeat: int) -> list[dict]:
        session, wdir = self._session(sc, kind, repeat)
        rec = {"scenario": sc.name, "writer": kind, "repeat": repeat, "ok": False}
        records = [rec]
        w = WriterProcess(kind, session, self.url, wdir, self.args.writer_args.get(kind, ()))
        try:
            w.start()
            w.wait_ready()
            recs = build(sc, wdir / "data", session)
            spy = self._profile(sc, kind, repeat, w)
            cpu0 = w.cpu_seconds()
            t0 = time.time()
            keys, rec["publish_s"] = publish_all(data_store(self.url), recs, sc)
            t_end = time.time()
            t1, done = w.wait_done(keys, self.idle_timeout)
            self._stop_profile(spy)
            rec["cpu_s"] = w.cpu_seconds() - cpu0
            rec["rss_mb"] = w.peak_rss_mb()
            w.stop()
            v = self._check_files(rec, recs, keys, t1, done)
            if t1 is not None:
                rec["seconds"] = t1 - t0
                rec["catchup_s"] = t1 - t_end
                # the writer's own cost per scan: its CPU time (the wall time is the publisher's)
                rec["per_scan_ms"] = rec["cpu_s"] / len(keys) * 1000
            if kind == "ours" and sc.compare:
                read = self._child("benchmarks.bound", "read", self.url, *keys)
                records.append(self._bound(sc, repeat, recs, v, wdir, read))
        except (WriterFailed, RuntimeError) as e:
            rec["check"] = f"error: {str(e).splitlines()[0]}"
            log(f"{sc.name} {kind}: {e}")
        finally:
            w.stop()
            self._flush()
        return records

    # -- S4: live ---------------------------------------------------------------------------
    def live(self, sc: Scenario, kind: str, repeat: int) -> list[dict]:
        session, wdir = self._session(sc, kind, repeat)
        rec = {"scenario": sc.name, "writer": kind, "repeat": repeat, "ok": False}
        w = WriterProcess(kind, session, self.url, wdir, self.args.writer_args.get(kind, ()))
        sampler = None
        try:
            w.start()
            w.wait_ready()
            (r,) = build(sc, wdir / "data", session)
            path, entry = r.identity["path"], f"{r.number}.1"
            samples_path = wdir / "lag_samples.json"
            sampler = subprocess.Popen([sys.executable, "-m", "benchmarks.lag", path, entry, "0.1",
                                        str(samples_path)], cwd=REPO)
            cpu0 = w.cpu_seconds()
            key, pub_log, t_start = publish_paced(data_store(self.url), r, sc)
            t_end = pub_log[-1][0]
            t1, _ = w.wait_done([key], self.idle_timeout)
            rec["cpu_s"] = w.cpu_seconds() - cpu0
            rec["rss_mb"] = w.peak_rss_mb()
            sampler.terminate()
            sampler.wait(30)
            samples = json.loads(samples_path.read_text())
            w.stop()
            rec.update(lag_stats(samples, pub_log, sc.rate, t_end))
            rec["publish_rate"] = sc.npoints / (t_end - t_start)
            rec["publish_s"] = t_end - t_start
            v = verify(path, [r])
            rec["size_mb"] = v["size_mb"]
            rec["check"] = describe(v)
            if t1 is not None:
                rec["seconds"] = t1 - t_start
                rec["catchup_s"] = t1 - t_end
            else:
                rec["check"] = "never finished; " + rec["check"]
            rec["ok"] = bool(v["ok"] and t1 is not None)
            behind = sc.npoints / sc.rate * 1.05
            if rec["publish_s"] > behind:
                rec["check"] += f" (publisher slow: {rec['publish_rate']:.0f} points/s)"
        except (WriterFailed, RuntimeError) as e:
            rec["check"] = f"error: {str(e).splitlines()[0]}"
            log(f"{sc.name} {kind}: {e}")
        finally:
            if sampler is not None and sampler.poll() is None:
                sampler.kill()
            w.stop()
            self._flush()
        return [rec]


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def _versions() -> dict:
    import h5py
    import importlib.metadata as md

    v = {"nexus_writer_service": md.version("nexus_writer_service"), "blissdata": md.version("blissdata"),
         "h5py": h5py.version.version, "hdf5": h5py.version.hdf5_version, "python": platform.python_version()}
    if ESRF_EXE.exists():
        py = ESRF_EXE.parent / "python"
        out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('blisswriter'), "
                              "m.version('blissdata'))"], capture_output=True, text=True).stdout.split()
        if len(out) == 2:
            v["esrf blisswriter"], v["esrf blissdata"] = out
    return v


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default=",".join(ORDER), help="comma-separated subset of " + ",".join(ORDER))
    p.add_argument("--repeat", type=int, help="repeats per scenario and writer; medians are reported "
                   "(default 3, 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="everything 20x smaller: a couple of minutes")
    p.add_argument("--writers", default="ours,esrf", help="ours, esrf (the bound runs with ours)")
    p.add_argument("--compression", help="our writer's --compression (default: its own default)")
    p.add_argument("--workdir", help="where files are written (default: a temporary folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the written files")
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of our writer's drains in DIR "
                   "(pip install py-spy into .venv; adds sampling overhead: time figures are then not comparable)")
    p.add_argument("--out", help="JSON file (default: benchmarks/results/<date>-<git sha>[-quick].json)")
    args = p.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.scale = 20 if args.quick else 1
    args.writer_args = {"ours": ["--compression", args.compression] if args.compression else []}
    return args


def main(argv=None) -> int:
    args = parse(argv)
    all_sc = scenarios(args.scale)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in all_sc]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {ORDER}")
    kinds = [k.strip() for k in args.writers.split(",") if k.strip()]
    if "esrf" in kinds and not ESRF_EXE.exists():
        log(f"ESRF's writer is not installed ({ESRF_EXE}): run scripts/bench_env.sh; comparing without it")
        kinds.remove("esrf")
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nxw_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    redis_dir = Path(tempfile.mkdtemp(prefix="nxw_bench_redis_"))  # short: unix socket path limit
    started = datetime.datetime.now()
    sha = _git("rev-parse", "--short", "HEAD") or "nogit"
    dirty = bool(_git("status", "--porcelain", "--", "nexus_writer_service"))
    log(f"git {sha}{' (package modified)' if dirty else ''}; scenarios {names}; writers {kinds}; "
        f"repeat {args.repeat}{'; quick (1/20 size)' if args.quick else ''}; files in {root}")
    runs: list[dict] = []
    server = RedisServer(redis_dir).start()
    try:
        bench = Bench(args, server, root)
        for name in names:
            sc = all_sc[name]
            for repeat in range(args.repeat):
                for kind in kinds:
                    if kind == "esrf" and not (sc.compare and sc.esrf):
                        continue
                    t = time.time()
                    run = {"paced": bench.live, "live": bench.live_scans}.get(sc.mode, bench.drain)
                    got = run(sc, kind, repeat)
                    runs.extend(got)
                    for g in got:
                        shown = {k: round(v, 3) for k, v in g.items() if isinstance(v, float)}
                        log(f"{name} #{repeat + 1} {g['writer']}: {g.get('check')} {shown}")
                    log(f"{name} #{repeat + 1} {kind} took {time.time() - t:.0f} s")
                    if not args.keep:
                        shutil.rmtree(root / f"{sc.name}-{repeat}-{kind}", ignore_errors=True)
            if not args.keep:  # S6/S7's detector files, shared by the repeats
                shutil.rmtree(root / "detector_files" / sc.name, ignore_errors=True)
                forget_detector_files()
    finally:
        server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    summary = report.summarize(runs)
    rat = report.ratios(summary)
    tgt = report.targets(summary, {n: all_sc[n].nscans for n in all_sc})
    print()
    print(report.table(summary, rat, tgt, ORDER))
    if args.quick:
        print("  (quick mode: 1/20 of the sizes; the targets are stated for the full run)")
    out = Path(args.out) if args.out else (
        REPO / "benchmarks" / "results" / f"{started:%Y%m%d-%H%M%S}-{sha}{'-quick' if args.quick else ''}.json")
    payload = {"date": started.isoformat(timespec="seconds"), "git_sha": sha, "package_modified": dirty,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
               "versions": _versions(), "options": {k: v for k, v in vars(args).items()},
               "scenarios": {n: vars(all_sc[n]) if hasattr(all_sc[n], "__dict__") else str(all_sc[n])
                             for n in names},
               "runs": runs, "summary": summary, "ratios": rat, "targets": tgt,
               "duration_s": (datetime.datetime.now() - started).total_seconds()}
    report.save(out, payload)
    log(f"saved {out}")
    return 0
