"""S4's sampler: how many points are on disk now, seen by a reader of the file.

A child process opens the file every ``period`` seconds the way a user's viewer
would while a scan runs (``h5py.File(..., locking=False)``: the writer holds the
HDF5 lock), and records (time, length of the shortest dataset under
``<entry>/measurement``). Both writers link every channel there. What counts is
what a reader sees in the file, i.e. after the writer flushed: "on disk now".
The writer's own progress in Redis (``written`` per channel in the completeness
protocol) is published at most once a second, too coarse for a p99 under 1 s,
and would say nothing about ESRF's writer.

A sample that fails (file not created yet, metadata changing under the reader)
records no length; the lag computation (``lag_stats``) skips it.

    python -m benchmarks.lag FILE ENTRY PERIOD OUT.json   (runs until SIGTERM)
"""

from __future__ import annotations

import json
import signal
import sys
import time

import numpy as np


def sample(path: str, entry: str) -> int | None:
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            meas = f.get(f"{entry}/measurement")
            if meas is None:
                return 0
            lengths = []
            for name in meas:
                obj = meas.get(name)
                if hasattr(obj, "shape") and obj.ndim == 1:
                    lengths.append(obj.shape[0])
            return min(lengths) if lengths else 0
    except Exception:
        return None


def run(path: str, entry: str, period: float, out: str) -> None:
    samples = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop:
        t = time.time()
        samples.append((t, sample(path, entry)))
        time.sleep(max(0.0, period - (time.time() - t)))
    with open(out, "w") as f:
        json.dump(samples, f)


def lag_stats(samples, publish_log, rate: float, t_end: float) -> dict:
    """Lag in seconds at each sample taken while publishing: (published - on disk) / rate.

    ``publish_log`` is the publisher's [(time, points sent)], interpolated at each sample.
    """
    pt = np.array([t for t, _ in publish_log])
    pn = np.array([n for _, n in publish_log], dtype=float)
    lags, failed = [], 0
    for t, n in samples:
        if t < pt[0] or t > t_end:
            continue
        if n is None:
            failed += 1
            continue
        published = float(np.interp(t, pt, pn))
        if n > published + 1:  # a read of metadata in flux: not trusted
            failed += 1
            continue
        lags.append(max(0.0, published - n) / rate)
    if not lags:
        return {"lag_max_s": None, "lag_p99_s": None, "samples": 0, "failed_samples": failed}
    return {"lag_max_s": float(np.max(lags)), "lag_p99_s": float(np.percentile(lags, 99)),
            "lag_median_s": float(np.median(lags)), "samples": len(lags), "failed_samples": failed}


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4])
