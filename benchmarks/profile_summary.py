"""Where our writer's time goes: a summary of py-spy's collapsed stacks (``--profile``).

``python -m benchmarks.profile_summary FILE [N]`` prints, for the samples of all
threads that were on CPU or in I/O, the share of each thread, the functions that
held the most samples themselves (self) and in total (inclusive, package frames
only), so a reader sees at once whether time is in h5py, in blissdata decoding,
in Redis waits or in our own Python.
"""

from __future__ import annotations

import collections
import sys


def load(path: str):
    stacks = []
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    parts = where.split("/")
    for anchor in ("nexus_writer_service", "blissdata", "h5py", "redis", "numpy", "hdf5plugin"):
        if anchor in parts:
            where = "/".join(parts[parts.index(anchor):])
            break
    else:
        where = parts[-1]
    return f"{name} ({where})"


def summarize(path: str, top: int = 25) -> str:
    stacks = load(path)
    total = sum(c for _, c in stacks) or 1
    threads = collections.Counter()
    self_ = collections.Counter()
    incl = collections.Counter()
    for frames, count in stacks:
        threads[frames[0]] += count
        self_[_short(frames[-1])] += count
        seen = set()
        for f in frames[1:]:
            s = _short(f)
            if s not in seen and ("nexus_writer_service" in s or "blissdata" in s or "h5py" in s):
                incl[s] += count
                seen.add(s)
    out = [f"{path}: {total} samples"]
    out.append("threads:")
    out += [f"  {100 * c / total:5.1f}%  {t}" for t, c in threads.most_common(8)]
    out.append("self (leaf frames):")
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_.most_common(top)]
    out.append("inclusive (package, blissdata, h5py frames):")
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
