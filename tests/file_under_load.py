"""A file written the way our writer writes one, as fast as it goes: entries created,
datasets appended, and the file flushed every ``FLUSH_PERIOD`` (5 times as often as
our writer: the load), for ``seconds``. Readers that open it meanwhile (without SWMR) catch
it half-flushed now and then.

    python file_under_load.py FILE SECONDS [FLUSH_PERIOD]
"""

from __future__ import annotations

import sys
import time

import h5py
import numpy as np

FLUSH_PERIOD = 0.1


def main(path: str, seconds: float, flush_period: float = FLUSH_PERIOD) -> int:
    t0 = time.monotonic()
    n = 0
    flushed = time.monotonic()
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["NX_class"] = "NXroot"
        while time.monotonic() - t0 < seconds:
            n += 1
            entry = f.create_group(f"{n}.1")
            entry.attrs["NX_class"] = "NXentry"
            entry["title"] = f"loopscan {n}"
            note = entry.create_group("writer")
            note["status"] = "WRITING"
            points = note.create_group("points")
            data = [entry.create_dataset(f"c{i}", shape=(0,), maxshape=(None,), chunks=(64,), dtype="f8")
                    for i in range(10)]
            for k in range(20):
                for d in data:
                    d.resize((k + 1) * 10, axis=0)
                    d[-10:] = np.random.random(10)
                if time.monotonic() - flushed > flush_period:
                    f.flush()
                    flushed = time.monotonic()
            for i in range(10):
                points[f"c{i}"] = 200
            del note["status"]
            note["status"] = "SUCCEEDED"
            entry["end_reason"] = "SUCCESS"
            f.flush()
    print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], *map(float, sys.argv[2:])))
