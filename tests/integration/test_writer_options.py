"""BLISS's ``writer_options`` and the configuration's compression reach the datasets written
(issue 13, 3 and 5), through real Redis."""

from __future__ import annotations

import copy

import h5py
import numpy as np

from conftest import read_file

SPECTRUM = "simu1:spectrum_det0"


def _with_writer_options(rec, options: dict):
    for attr in ("info_created", "info_prepared", "info_final"):
        info = copy.deepcopy(getattr(rec, attr))
        info["writer_options"] = options
        setattr(rec, attr, info)
    return rec


def _filters(dset: h5py.Dataset) -> list[int]:
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def test_bliss_writer_options_change_chunks_and_filters(harness):
    rec = _with_writer_options(harness.recording("10_loopscan_mca", number=81),
                               {"chunk_options": {"compression_scheme": "gzip-byteshuffle",
                                                  "chunk_nbytes": 8192}, "separate_scan_files": None})
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        dset = f["81.1/instrument/simu1_det0/spectrum"]
        assert _filters(dset) == [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE]
        # chunk_nbytes 8192 = 2 whole spectra of 1024 uint32 channels
        assert (dset.shape, dset.dtype, dset.chunks) == ((5, 1024), np.uint32, (2, 1024))
        assert np.array_equal(dset[()], rec.stream(SPECTRUM).data)
        assert f["81.1/writer/required_filter_plugins"][()] in (b"none", "none")


def test_bad_writer_options_are_a_warning_not_a_failure(harness):
    rec = _with_writer_options(harness.recording("10_loopscan_mca", number=82),
                               {"chunk_options": {"compression_scheme": "zip"}})
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    assert state.warnings == ["writer_options.chunk_options.compression_scheme: 'zip' ignored (BLISS names: none, "
                              "gzip, byteshuffle, gzip-byteshuffle, bitshuffle, lz4-bitshuffle)"], state.warnings


def test_a_detector_configured_gzip_wins_over_the_default(make_harness):
    harness = make_harness(beamline={"detectors": {"simu1": {"compression": "gzip"}}})
    rec = harness.recording("10_loopscan_mca", number=83)
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        assert h5py.h5z.FILTER_DEFLATE in _filters(f["83.1/instrument/simu1_det0/spectrum"])
