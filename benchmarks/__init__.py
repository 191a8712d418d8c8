"""Benchmarks of the NeXus writer (issue #5): throughput, live lag and memory.

One command (``./benchmarks/run.sh`` or ``.venv/bin/python -m benchmarks``) starts a
real Redis, publishes the scenarios S1-S5 with the package's replayer, runs OUR
``NexusSessionWriter`` and ESRF's (blisswriter 2.0.0, in ``.blisswriter_venv``) as
separate processes, measures the physical bound (plain h5py appends + plain Redis
reads of the same data) and prints one table with the ratios and the targets.

Modules, in the order a run uses them:

- ``scenarios``: what S1..S5 publish (built from the package's recordings) and the
  deterministic data every process can regenerate for checking;
- ``publishing``: publishing a scenario (all at once, or paced for S4);
- ``writers``: a writer as a child process: ready, paused, resumed, finished, RSS/CPU;
- ``bound``: the physical bound (child processes: plain Redis read, plain h5py write);
- ``verify``: did a writer write every point, with the right values?
- ``lag``: S4's sampler, a child process reading the file while it is written;
- ``report``: table, ratios, targets, JSON;
- ``cli``: the command line and the order of a run.
"""
