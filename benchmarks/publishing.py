"""Publishing a scenario with the package's replayer.

Throughput scenarios are published whole while the writer is paused (SIGSTOP):
the writer then drains Redis with both cores to itself, and its time is not mixed
with the publisher's (which would be BLISS's on a beamline). S4 is live: points
are sent on a wall-clock schedule (``rate`` points/s in batches) while the writer
runs, and the publisher logs (time, points sent) for the lag computation.
"""

from __future__ import annotations

import time

from blissdata.redis_engine.store import DataStore

from nexus_writer_service.simulation.replay import ScanPublisher

from .scenarios import Scenario


def data_store(url: str) -> DataStore:
    """A DataStore that can publish more than ~100 streams at once.

    blissdata gives each stream being published a sink with its own connection from
    the DataStore's pool, and redis-py 8 limits a pool to 100 connections by default
    ("Too many connections" at the 100th stream of S1 and S4).
    """
    ds = DataStore(url)
    ds._redis.connection_pool.max_connections = 10_000
    return ds


def publish_all(ds: DataStore, recs: list, sc: Scenario) -> tuple[list[str], float]:
    """Publish every scan from start to end; returns their keys and the seconds it took."""
    t0 = time.perf_counter()
    keys = [ScanPublisher(ds, rec, batch_size=sc.batch).run() for rec in recs]
    return keys, time.perf_counter() - t0


def publish_paced(ds: DataStore, rec, sc: Scenario) -> tuple[str, list[tuple[float, int]], float]:
    """Publish one scan at ``sc.rate`` points/s; returns (key, [(time, points sent)], start time).

    A batch is sent when the wall clock reaches its first point's time, so a
    publisher that falls behind catches up instead of drifting (the log shows it).
    """
    pub = ScanPublisher(ds, rec, batch_size=sc.batch).create().prepare().start()
    streams = pub.data_streams()
    t0 = time.time()
    log = [(t0, 0)]
    for start in range(0, sc.npoints, sc.batch):
        due = t0 + start / sc.rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        stop = min(start + sc.batch, sc.npoints)
        for s in streams:
            pub.streams[s.name].send(s.data[start:stop])
        log.append((time.time(), stop))
    pub.end()
    return pub.key, log, t0
