"""End to end with REAL BLISS 2.2.1: Beacon, a BLISS session running scans, our writer.

Opt-in (needs the BLISS venv, built by ``scripts/bliss_env.sh`` in 2-3 minutes the first
time, about a second afterwards)::

    NXW_REAL_BLISS=1 .venv/bin/python -m pytest tests/system/test_real_bliss.py -q

One Beacon and one of OUR writers (``NexusSessionWriter`` from BLISS's own environment,
the BLISS venv, as a separate process) serve the module. BLISS runs the scans in library mode (tests/realbliss/
scans_writer.py); the session's setup script calls
``nexus_writer_service.metadata.register_all_metadata_generators()``, so with writer
'null' the only thing telling our writer where to write is ``scan_info["nexuswriter"]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
REALBLISS = REPO / "tests" / "realbliss"
SESSION = "test_session"
BEAMLINE, INSTRUMENT = "id99", "ESRF-ID99"
#: scans_writer.py labels of the saved scans ("ct" is never saved in BLISS 2.2.1)
SAVED = ["ascan", "a2scan", "amesh", "loopscan", "timescan", "aborted", "sequence",
         "sequence_child1", "sequence_child2"]

pytestmark = pytest.mark.skipif(
    os.environ.get("NXW_REAL_BLISS") != "1",
    reason="real-BLISS end-to-end tests are opt-in: set NXW_REAL_BLISS=1 "
    "(builds/reuses the BLISS 2.2.1 venv with scripts/bliss_env.sh)",
)

sys.path.insert(0, str(REALBLISS))


def _lines(stdout: str, prefix: str) -> list[dict]:
    return [json.loads(line[len(prefix) + 1:]) for line in stdout.splitlines() if line.startswith(prefix + " ")]


class RealStack:
    """Beacon + our writer; runs BLISS scripts and keeps what they reported."""

    def __init__(self, tmp: Path, beacon):
        self.tmp, self.beacon = tmp, beacon
        self.url = beacon.redis_data_url
        self.writer: subprocess.Popen | None = None

    def start_writer(self) -> None:
        from beacon import ours

        from nexus_writer_service.transport.status import StatusReader

        log = open(self.tmp / "writer.out", "wb")
        self.writer = subprocess.Popen(
            [ours(self.beacon, "NexusSessionWriter"), SESSION, "--redis-url", self.url,
             "--log=info", "--base-path", str(self.tmp / "writer_base")],
            env=self.beacon.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        reader, deadline = StatusReader(self.url), time.monotonic() + 30
        while reader.writer(SESSION) is None or "listening for scans" not in (self.tmp / "writer.out").read_text():
            assert self.writer.poll() is None, (self.tmp / "writer.out").read_text()
            assert time.monotonic() < deadline, "our writer did not start"
            time.sleep(0.1)
        # it runs where BLISS is: with BLISS 2.2.1's blissdata (the log's first line says which)
        assert "; blissdata 2.0.1)" in (self.tmp / "writer.out").read_text()

    def stop_writer(self) -> None:
        if self.writer is not None and self.writer.poll() is None:
            self.writer.terminate()
            try:
                self.writer.wait(30)
            except subprocess.TimeoutExpired:
                self.writer.kill()
                self.writer.wait()

    def bliss(self, script: str, *args, timeout: float = 240) -> str:
        from beacon import run_bliss_script

        result = run_bliss_script(REALBLISS / script, self.beacon, timeout=timeout, args=args, cwd=self.tmp)
        (self.tmp / f"{script}.stdout").write_text(result.stdout)
        (self.tmp / f"{script}.stderr").write_text(result.stderr)
        assert result.returncode == 0, f"{script} {args} exited {result.returncode}:\n{result.stderr[-4000:]}"
        return result.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    t0 = time.monotonic()
    from beacon import prepare, running_beacon

    tmp = tmp_path_factory.mktemp("real_bliss")
    config = prepare(tmp, BEAMLINE, INSTRUMENT)  # BLISS built once; the repo's Beacon config
    with running_beacon(tmp / "beacon", config_dir=config) as beacon:
        s = RealStack(tmp, beacon)
        s.start_writer()
        print(f"\n[real_bliss] stack up in {time.monotonic() - t0:.1f} s ({tmp})")
        try:
            yield s
        finally:
            s.stop_writer()


@pytest.fixture(scope="module")
def null_scans(stack):
    t0 = time.monotonic()
    out = stack.bliss("scans_writer.py", stack.tmp / "data_null", "null")
    print(f"[real_bliss] null-writer scans in {time.monotonic() - t0:.1f} s")
    # the setup script registered the generators, scans_writer.py once more: no duplicates
    assert _lines(out, "USM") == [{"nexuswriter": ["nxw_instrument_info", "nxw_devices", "nxw_filename",
                                                   "nxw_configuration", "nxw_writer_check"]}]
    scans = {s["label"]: s for s in _lines(out, "SCAN")}
    assert set(scans) == {"ct", "ascan", "a2scan", "amesh", "loopscan", "timescan", "aborted",
                          "sequence", "sequence_child1", "sequence_child2"}
    # all written before any test opens the file: the writer holds it open (HDF5 lock)
    # while any of its scans is being written
    for label in SAVED:
        _final_state(stack, scans[label]["key"])
    print(f"[real_bliss] ... and written in {time.monotonic() - t0:.1f} s")
    return scans


def _final_state(stack, key: str, timeout: float = 60) -> dict:
    from nexus_writer_service.metadata import wait_for_writer

    state = wait_for_writer(key, timeout, redis_url=stack.url)
    assert state is not None, f"our writer never saw {key}"
    return state


def _load(stack, key: str):
    from blissdata.redis_engine.store import DataStore

    return DataStore(stack.url).load_scan(key)


def _published(scan) -> dict:
    """Every numeric stream of a scan as BLISS published it (from Redis)."""
    out = {}
    for name, stream in scan.streams.items():
        if stream.info.get("plugin") == "scan_sequence" or name.endswith("SUBSCANS"):
            continue
        out[name] = np.asarray(stream[:])
    return out


def _check_entry(f: h5py.File, entry_name: str, scan, state: dict) -> None:
    """Values in the file equal what BLISS published; metadata from the generators."""
    entry = f[entry_name]
    info = scan.info
    assert entry.attrs["NX_class"] == "NXentry"
    assert entry["title"][()].decode() == info["title"]
    assert entry["end_reason"][()].decode() == info["end_reason"]
    assert entry["writer/status"][()].decode() == "SUCCEEDED"
    name = entry["instrument/name"]
    assert name[()].decode() == INSTRUMENT and name.attrs["short_name"] == BEAMLINE
    published = _published(scan)
    if not published:  # a sequence publishes no data of its own: no empty group for it
        assert "measurement" not in entry
    measurement = entry.get("measurement")
    for channel, data in published.items():
        candidates = [n for n, d in measurement.items()
                      if d.shape == data.shape and np.array_equal(d[()], data, equal_nan=True)]
        assert candidates, f"{entry_name}: {channel} ({data.shape}) not found in measurement"
        assert measurement[candidates[0]].dtype == data.dtype, channel
        if "data_path" in scan.streams[channel].info:  # writer 'external': where BLISS says
            assert np.array_equal(f[scan.streams[channel].info["data_path"]][()], data, equal_nan=True)
    points = max((state.get("written") or {}).values(), default=0)
    assert points == max((len(d) for d in _published(scan).values()), default=0)


def _check_generated_metadata(scan) -> None:
    nxw = scan.info["nexuswriter"]
    assert nxw["instrument_info"] == {"name": INSTRUMENT, "name@short_name": BEAMLINE}
    devices = nxw["devices"]
    for channel in scan.info["channels"]:
        if channel.startswith("timer:") or "SUBSCANS" in channel or channel.startswith("custom"):
            continue
        assert channel in devices, f"no device info for {channel}"
    for channel, dev in devices.items():
        if "diode" in channel:
            assert dev["device_type"] == "samplingcounter" and dev["device_info"]["mode"] == "MEAN"
        elif channel.startswith("simu1:"):
            assert dev["device_type"] == "mca"
        elif channel.startswith("axis:"):
            assert dev["device_type"] == "positioner"


@pytest.mark.parametrize("label", SAVED)
def test_null_writer_scan_written_where_scan_saving_says(stack, null_scans, label):
    line = null_scans[label]
    expected = line["scan_saving_file"]
    assert expected == str(stack.tmp / "data_null" / SESSION / "data.h5")
    # BLISS names no file with writer 'null': our generator does, as SCAN_SAVING would
    assert line["filename"] is None
    assert line["nexuswriter"]["filename"] == expected
    scan = _load(stack, line["key"])
    assert scan.path is None and scan.info["nexuswriter"]["filename"] == expected
    _check_generated_metadata(scan)

    state = _final_state(stack, line["key"])
    assert state["status"] == "SUCCEEDED", state
    assert os.path.abspath(state["file"]) == expected
    entry_name = f"{line['number']}.1"
    assert state.get("entries") == [entry_name], state
    with h5py.File(expected, "r") as f:
        _check_entry(f, entry_name, scan, state)
        if label == "aborted":
            assert f[entry_name]["end_reason"][()].decode() == "USER_ABORT"
            assert max(len(d) for d in _published(scan).values()) < line["npoints"]
        if label == "amesh":
            # channels stay flat; the default plot has the mesh's (slow, fast) shape
            n1, n2 = scan.info["npoints1"], scan.info["npoints2"]
            assert f[entry_name]["measurement/diode1"].shape == (n1 * n2,) == (line["npoints"],)
            plot = f[entry_name][f[entry_name].attrs["default"]]
            assert plot[plot.attrs["signal"]].shape == (n2, n1)


def test_null_writer_sequence_children_point_to_parent(stack, null_scans):
    parent = null_scans["sequence"]
    for child in ("sequence_child1", "sequence_child2"):
        assert null_scans[child]["group"] == parent["key"]
        assert null_scans[child]["nexuswriter"]["filename"] == parent["nexuswriter"]["filename"]


def test_null_writer_ct_is_not_written(stack, null_scans):
    """ct is never saved in BLISS 2.2.1 (no scan_meta, per-process number)."""
    from nexus_writer_service.transport.status import StatusReader

    line = null_scans["ct"]
    assert line["save"] is False and line["nexuswriter"] is None
    # every scan after it is written (null_scans): the writer had its chance
    state = StatusReader(stack.url).scan(line["key"])
    assert state is not None and state["status"] == "SKIPPED", state  # seen, and not written
    assert not state.get("entries") and not state.get("file"), state


def test_null_writer_file_is_valid_nexus(stack, null_scans):
    from nxvalidation import nexus_errors

    path = null_scans["ascan"]["scan_saving_file"]
    with h5py.File(path, "r") as f:
        entries = set(f)
    assert {f"{null_scans[l]['number']}.1" for l in SAVED} <= entries
    assert nexus_errors(path) == []


def test_external_writer_file_named_by_bliss(stack):
    from nxvalidation import nexus_errors

    out = stack.bliss("scans_writer.py", stack.tmp / "data_ext", "external", "ascan,loopscan")
    lines = _lines(out, "SCAN")
    assert [l["label"] for l in lines] == ["ascan", "loopscan"]
    expected = str(stack.tmp / "data_ext" / SESSION / "data.h5")
    for line in lines:  # all written before the file is opened (see null_scans)
        _final_state(stack, line["key"])
    for line in lines:
        assert line["filename"] == expected == line["scan_saving_file"]
        nxw = line["nexuswriter"]
        assert "filename" not in nxw  # BLISS names the file: our generator stays quiet
        assert "masterfiles" in nxw  # blisswriter's generators ran too, merged with ours
        scan = _load(stack, line["key"])
        assert scan.path == expected
        _check_generated_metadata(scan)
        state = _final_state(stack, line["key"])
        assert state["status"] == "SUCCEEDED", state
        assert os.path.abspath(state["file"]) == expected
        with h5py.File(expected, "r") as f:
            _check_entry(f, f"{line['number']}.1", scan, state)
    assert nexus_errors(expected) == []


def test_null_writer_applies_the_sessions_beamline_configuration(stack, null_scans):
    """The session's Beacon YAML names nexus_writer.yaml: checked and published by the
    session, applied by our writer (which was given no configuration of its own)."""
    line = null_scans["ascan"]
    scan = _load(stack, line["key"])
    assert scan.info["nexuswriter"]["configuration"]["technique"] == "transmission"
    with h5py.File(line["nexuswriter"]["filename"], "r") as f:
        entry = f[f"{line['number']}.1"]
        assert entry["instrument/source/name"][()] == b"ESRF"
        assert entry["instrument/source/energy"].attrs["units"] == "GeV"
        assert entry["instrument/diode1/type"][()] == b"diode"
        assert entry["sample/name"][()] == b"test sample"
        assert entry.attrs["default"] == "diodes"
        diodes = entry["diodes"]
        assert diodes.attrs["signal"] == "diode2" and list(diodes.attrs["axes"]) == ["robx"]
        assert np.array_equal(diodes["diode2"][()], np.asarray(scan.streams["simulation_diode_sampling_controller:diode2"][:]))
        assert entry["transmission"].attrs["NX_class"] == "NXsubentry"


def test_writer_status_from_inside_bliss(stack, null_scans):
    """Last test of the module: it stops the writer, then a saved scan warns."""
    status = _lines(stack.bliss("writer_status_check.py"), "STATUS")[0]
    assert status["alive"] is True and status["writer"]["pid"] == stack.writer.pid
    assert {s["key"] for s in status["scans"]} & {null_scans[l]["key"] for l in SAVED}
    stack.stop_writer()
    status = _lines(stack.bliss("writer_status_check.py"), "STATUS")[0]
    assert status["alive"] is False and status["writer"] is None
    assert "NO WRITER ALIVE" in status["text"]
    stack.bliss("scans_writer.py", stack.tmp / "data_nowriter", "null", "ascan")
    warned = (stack.tmp / "scans_writer.py.stderr").read_text()
    assert "no NeXus writer is alive for session 'test_session'" in warned
