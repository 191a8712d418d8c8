"""The README's first command: the demo, as a user runs it (embedded Redis, replayed
session, the writer as its own process with the documented beamline configuration)."""

from __future__ import annotations

import subprocess
import sys

import h5py

from nxvalidation import empty_groups, nexus_errors


def test_demo_writes_every_scan_with_the_example_configuration(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "nexus_writer_service.apps.demo", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "16 entries in 2 files" in proc.stdout and ": 16 SUCCEEDED" in proc.stdout
    files = sorted(out.rglob("data.h5"))
    assert len(files) == 1
    with h5py.File(files[0], "r") as f:
        ascan = f["24.1"]
        assert ascan["instrument/source/name"][()] == b"ESRF"  # from the example configuration
        assert ascan["instrument/i0/type"][()] == b"diode"
        assert ascan.attrs["default"] == "transmission_curve"
        assert f["31.1"]["instrument/fluo_det0/spectrum"].shape[0] == 5
        assert list(f["28.1/transmission_curve/it"].shape) == [3, 4]  # the mesh, in its shape
        # today's detectors: Lima2 frames and MOSCA spectra referenced from their own files
        lima2 = f["101.1/instrument/lima2_simulator/data"]
        assert lima2.is_virtual and lima2.shape == (6, 8, 10) and lima2[5].any()
        assert f["101.1/images"].attrs["signal"] == "lima2_simulator"
        mosca = f["102.1/instrument/mosca_simulator_det00/spectrum"]
        assert mosca.is_virtual and mosca.shape == (5, 64) and mosca[4].any()
        assert "fractional_dead_time" in f["102.1/instrument/mosca_simulator_det00"]
    for path in out.rglob("*.h5"):
        assert nexus_errors(str(path)) == [], path
        assert empty_groups(str(path)) == [], path  # a group is written with content, or not at all
