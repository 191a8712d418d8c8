"""What each scenario publishes, built from the scans recorded from a real BLISS.

The recordings give the scan_info BLISS really publishes (acquisition chain,
devices, channels, writer metadata); ``scaled`` (package) adds counters, and this
module sets the shapes the issue asks for and replaces the recorded values by
deterministic synthetic ones. Every value is a function of (scan, channel, point
index), so any process (publisher, h5py bound, verifier, S4 sampler) regenerates
the same data without shipping arrays around, and no two channels hold the same
values (content checks cannot confuse them). Values are not constant or
repeated, so a compression filter gets a realistic, not a flattering, job.

``scale`` divides the number of points (and scans in S3, files in S5, and S4's
duration): ``--quick`` uses 1/20.

S6 (Lima2) and S7 (MOSCA) reference detector files: written once per benchmark run
with the package's simulators (``detector_files``), outside any timed part, and
shared by the repeats.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nexus_writer_service.simulation.lima import LimaDetector, add_lima
from nexus_writer_service.simulation.lima2 import Lima2Detector, add_lima2
from nexus_writer_service.simulation.mosca import MoscaDetector, add_mosca
from nexus_writer_service.simulation.recording import ScanRecording, load_recording, relocate, scaled


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    #: number of scans (S3: many small ones)
    nscans: int
    #: points per scan
    npoints: int
    #: points per ``stream.send`` (also the h5py bound's append size)
    batch: int
    #: S4: published at ``rate`` points/s while the writer runs; others are drained
    live: bool = False
    rate: float = 0.0
    #: compared with ESRF's writer and the bound (S1_50k only checks memory)
    compare: bool = True
    #: how it runs: "drain" (published while the writer is paused), "paced" (S4: one scan
    #: at ``rate`` points/s), "live" (S3_live: whole scans published back to back while
    #: the writer runs); ``live`` is kept for "paced"
    mode: str = "drain"
    #: compared with the bound only (ESRF's writer has no Lima2/MOSCA support to compare)
    esrf: bool = True
    #: (S2_live, S2_1000_live) the target is the floor: max(the publisher's own time, a plain
    #: UNCOMPRESSED read + write of the same data), whatever filter our writer applies
    floor: bool = False


def scenarios(scale: int = 1) -> dict[str, Scenario]:
    """The issue's scenarios; ``scale`` > 1 divides their size (quick mode)."""
    def n(x: int, minimum: int = 10) -> int:
        return max(minimum, x // scale)

    return {s.name: s for s in (
        Scenario("S1", "0D-heavy: 100 float64 counters + 1 motor", 1, n(200_000), 1000),
        Scenario("S1_50k", "S1 at a quarter of the points (memory must not grow with length)",
                 1, n(50_000), 1000, compare=False),
        Scenario("S2", "MCA: 4 spectra x 4096 uint32 (+ 33 MCA/timer 0D)", 1, n(5_000), 50),
        Scenario("S2_1", "S2 published 1 point per send", 1, n(5_000), 1),
        Scenario("S2_1000", "S2 published 1000 points per send", 1, n(5_000), 1000),
        # issue 20 item 2: the default (portable) compression must keep up with a live MCA scan
        Scenario("S2_live", "S2 published live while the writer runs", 1, n(5_000), 50, mode="live",
                 esrf=False, floor=True),
        Scenario("S2_1000_live", "S2 published live, 1000 points per send", 1, n(5_000), 1000, mode="live",
                 esrf=False, floor=True),
        Scenario("S3", "many small scans: 10 points x 10 channels", n(200, 10), 10, 1),
        Scenario("S3_live", "S3 published live, scan after scan, while the writer runs",
                 n(200, 10), 10, 1, mode="live"),
        # S4 sends every 50 ms (500 points): 100 sends a batch is what one Python publisher
        # sustains beside the writer on 2 cores (100-point batches reached ~7 kHz only)
        Scenario("S4", "live: 100 counters paced at 10 kHz", 1, n(600_000), 500,
                 live=True, rate=10_000.0, mode="paced"),
        Scenario("S5", "lima: frames referenced in 100-frame HDF5 files", 1, n(10_000, 200), 100),
        Scenario("S6", "lima2: frames from 2 receivers in 50 files each", 1, n(100_000, 400), 1000,
                 esrf=False),
        Scenario("S6_25k", "S6 at a quarter of the frames (memory must not grow with frames)",
                 1, n(25_000, 100), 1000, compare=False),
        Scenario("S7", "mosca: 4 detectors x 4096 channels in 100 files", 1, n(20_000, 400), 1000,
                 esrf=False),
        Scenario("S7_5k", "S7 at a quarter of the points (memory must not grow with points)",
                 1, n(5_000, 100), 1000, compare=False),
        # about the most channels BLISS publishes: it refuses a scan_info over 1 MB (~4400
        # counters); memory only (the per-channel cost), 200 points whatever the scale
        Scenario("S8", "many channels: 4004 float64 counters + 1 motor, 200 points", 1, 200, 20,
                 compare=False),
    )}


# -- deterministic data ------------------------------------------------------------

def seed_of(scan_index: int, channel: str) -> int:
    return zlib.crc32(f"{scan_index}:{channel}".encode())


def generate(seed: int, dtype: str, point_shape: tuple, start: int, stop: int) -> np.ndarray:
    """Points [start, stop) of one channel: distinct per channel, never constant."""
    dtype = np.dtype(dtype)
    i = np.arange(start, stop, dtype=np.int64)
    if not point_shape:
        if dtype.kind == "f":
            freq = 1e-3 * (1 + (seed % 997) / 997)
            return (np.sin(i * freq + seed % 1000) * 100 + i * 1e-3 + seed % 89).astype(dtype)
        return ((i * (seed % 7 + 1) + seed) % 1_000_003).astype(dtype)
    nchan = int(np.prod(point_shape))
    c = np.arange(nchan)
    peaks = (1000 * np.exp(-0.5 * ((c - nchan * 0.3) / (nchan * 0.01)) ** 2)
             + 200 * np.exp(-0.5 * ((c - nchan * 0.6) / (nchan * 0.02)) ** 2) + 5)
    gain = 1 + ((i + seed) % 17) / 17
    noise = (i[:, None] * 31 + c[None, :] * 17 + seed) % 7
    out = (peaks[None, :] * gain[:, None] + noise).astype(dtype)
    out[:, 0] = i  # every point unique
    return out.reshape((len(i),) + tuple(point_shape))


class LazyData:
    """A channel's points, generated when sliced (S4 publishes 600k x 100 values)."""

    def __init__(self, seed: int, dtype: str, point_shape: tuple, npoints: int):
        self.seed, self.dtype, self.point_shape, self.npoints = seed, dtype, tuple(point_shape), npoints

    def __len__(self) -> int:
        return self.npoints

    def __getitem__(self, item):
        if not isinstance(item, slice):
            raise TypeError("LazyData supports slices only")
        start, stop, step = item.indices(self.npoints)
        return generate(self.seed, self.dtype, self.point_shape, start, max(start, stop))[::step]

    def full(self) -> np.ndarray:
        return self[:]


def _with_points(rec: ScanRecording, scan_index: int, npoints: int) -> ScanRecording:
    for s in rec.streams:
        if s.is_numeric:
            s.data = LazyData(seed_of(scan_index, s.name), s.encoding["dtype_str"],
                              tuple(s.encoding["shape"]), npoints)
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        if "npoints" in info:
            info["npoints"] = npoints
    return rec


def _spectra(rec: ScanRecording, nchan: int) -> ScanRecording:
    for s in rec.streams:
        if s.is_numeric and len(s.encoding["shape"]) == 1:
            s.encoding = dict(s.encoding, shape=[nchan])
            s.info = dict(s.info, shape=[nchan])
    return rec


def lima_detector() -> LimaDetector:
    # lowercase "hdf5", as BLISS 2.2.1 publishes it (acquisition/lima.py); ESRF's writer
    # makes a VDS only for that spelling and stores URL strings otherwise
    return LimaDetector(name="bench_lima", shape=(8, 10), dtype="uint16", file_format="hdf5",
                        frames_per_file=100)


def lima2_detector(sc: Scenario) -> Lima2Detector:
    """2 receivers, 50 files each (1000 frames per file at 100,000 frames), 8 x 10 uint16."""
    return Lima2Detector(name="bench_lima2", shape=(8, 10), dtype="uint16", receivers=2,
                         frames_per_file=max(1, sc.npoints // 100))


def mosca_detector(sc: Scenario) -> MoscaDetector:
    """4 detectors x 4096 uint32 channels, 100 files (200 points per file at 20,000 points)."""
    return MoscaDetector(name="bench_mosca", detectors=4, channels=4096, dtype="uint32",
                         points_per_file=max(1, sc.npoints // 100))


#: detector recordings made once per run: (scenario, folder) -> recording with its files
_DETECTOR_RECS: dict = {}


def detector_files(sc: Scenario, folder: Path) -> ScanRecording:
    """The S6/S7 scan with its detector's files in ``folder``, written the first time only."""
    key = (sc.name, str(folder))
    if key not in _DETECTOR_RECS:
        rec = _with_points(load_recording("13_timescan"), 0, sc.npoints)
        if sc.name.startswith("S6"):
            rec = add_lima2(rec, lima2_detector(sc), str(folder), keep_frames=False)
        else:
            rec = add_mosca(rec, mosca_detector(sc), str(folder), keep_spectra=False)
        _DETECTOR_RECS[key] = rec
    return _DETECTOR_RECS[key].copy()


def forget_detector_files() -> None:
    _DETECTOR_RECS.clear()


def build(sc: Scenario, base: Path, session: str, images_dir: Path | None = None,
          detector_dir: Path | None = None) -> list[ScanRecording]:
    """The recordings to publish for ``sc``: relocated under ``base``, in ``session``."""
    recs = []
    if sc.name in ("S1", "S1_50k"):
        rec = scaled(load_recording("03_ascan"), extra_counters=96)  # 4 recorded + 96 = 100 counters
        recs.append(_with_points(rec, 0, sc.npoints))
    elif sc.name.startswith("S2"):
        rec = _spectra(load_recording("10_loopscan_mca"), 4096)
        recs.append(_with_points(rec, 0, sc.npoints))
    elif sc.name.startswith("S3"):
        template = scaled(load_recording("13_timescan"), extra_counters=6)  # 4 + 6 = 10 channels
        for k in range(sc.nscans):
            recs.append(_with_points(template.copy(), k, sc.npoints))
    elif sc.name == "S4":
        rec = scaled(load_recording("13_timescan"), extra_counters=96)  # 4 + 96 = 100 counters
        for info in (rec.info_created, rec.info_prepared, rec.info_final):
            info["count_time"] = 1.0 / sc.rate
        recs.append(_with_points(rec, 0, sc.npoints))
    elif sc.name == "S5":
        rec = _with_points(load_recording("13_timescan"), 0, sc.npoints)
        assert images_dir is not None
        rec = add_lima(rec, lima_detector(), str(images_dir))
        rec.lima_frames = {}  # regenerated by the verifier; keeps copies small
        recs.append(rec)
    elif sc.name == "S8":
        rec = scaled(load_recording("03_ascan"), npoints=sc.npoints, extra_counters=4000)  # + 4 recorded
        recs.append(_with_points(rec, 0, sc.npoints))
    elif sc.name.startswith(("S6", "S7")):
        assert detector_dir is not None
        recs.append(detector_files(sc, detector_dir))
    else:
        raise KeyError(sc.name)
    first = recs[0].number
    return [relocate(r, base, session=session, number=first + k) for k, r in enumerate(recs)]


def data_streams(rec: ScanRecording) -> list:
    """Numeric streams whose every point the writer must store (a Lima2 stream's events
    are progress counts, not data)."""
    return [s for s in rec.streams if s.is_numeric and s.info.get("plugin") in (None, "hdf5_fallback")]
