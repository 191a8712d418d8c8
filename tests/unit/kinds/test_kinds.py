"""The stream kinds alone (no Redis, no files): classification and each kind's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from nexus_writer_service.h5map import VirtualDataset

from nexus_writer_service import kinds
from nexus_writer_service.descriptions import FileFacts, FileQuery, describe_stream
from nexus_writer_service.kinds.lima import frame_references
from nexus_writer_service.kinds.lima2 import master_vds, progressions
from nexus_writer_service.kinds.mosca import spectra_runs

NUM = {"type": "numeric", "dtype_str": "<f8", "shape": []}
JSON = {"type": "json"}


@pytest.mark.parametrize("info, encoding, kind", [
    ({"dtype": "float64", "shape": []}, NUM, "numeric"),
    ({"plugin": "hdf5_fallback", "data_path": "1.1/instrument/d/data"}, NUM, "hdf5_fallback"),
    ({"data_path": "1.1/instrument/d/data"}, NUM, "hdf5_fallback"),  # blissdata < 2 file-backed
    ({"plugin": "lima", "format": "lima_v1", "lima_info": {}}, JSON, "lima"),
    ({"format": "lima_v1"}, JSON, "lima"),                          # legacy: no plugin key
    ({"plugin": "lima2", "protocol_version": 2}, {"type": "numeric", "dtype_str": "<u4", "shape": []}, "lima2"),
    ({"plugin": "mosca", "mosca_info": {}}, JSON, "mosca"),
    ({"plugin": "scan_sequence", "format": "subscan"}, JSON, "scan_sequence"),
    ({}, JSON, "json"),
    ({"plugin": "some_future_plugin"}, NUM, "unsupported"),
    ({}, {"type": "zstd-blob"}, "unsupported"),
])
def test_kind_is_chosen_from_the_description(info, encoding, kind):
    stream = describe_stream("x:y", info, encoding)
    assert kinds.kind_of(stream).name == kind


def test_a_new_kind_registers_and_wins_by_priority():
    @kinds.register
    class Custom(kinds.StreamKind):
        name = "custom_test_kind"
        priority = 100

        @classmethod
        def accepts(cls, stream):
            return stream.plugin == "custom"

    try:
        assert kinds.kind_of(describe_stream("a", {"plugin": "custom"}, JSON)) is Custom
        assert kinds.kind_of(describe_stream("a", {}, JSON)).name == "json"
    finally:
        kinds._KINDS.remove(Custom)


LIMA = {"file_path": "/d/img_%04d.h5", "data_path": "/entry_0000/measurement/data",
        "file_format": "HDF5", "file_offset": 3, "frame_per_file": 2, "frame_per_acquisition": 5}


@pytest.mark.parametrize("frame, file, index", [
    (0, "/d/img_0003.h5", 0), (1, "/d/img_0003.h5", 1), (2, "/d/img_0004.h5", 0),
    (4, "/d/img_0005.h5", 0),   # last frame of the first acquisition: a file of its own
    (5, "/d/img_0006.h5", 0),   # second acquisition starts a new file
    (8, "/d/img_0007.h5", 1),
])
def test_lima_frame_references(frame, file, index):
    fmt, path, data_path, i = frame_references(LIMA, frame + 1)[frame]
    assert (fmt, path, data_path, i) == ("HDF5", file, LIMA["data_path"], index)


def test_lima_statuses_give_acquired_and_saved():
    k = kinds.handler(describe_stream("cam:image", {"plugin": "lima", "lima_info": LIMA, "dtype": "uint16",
                                                    "shape": [4, 5]}, JSON))
    k.on_events([{"last_index": 2, "last_index_saved": 1}, {"last_index": 5, "last_index_saved": 3}])
    assert (k.acquired, k.saved, k.progress()) == (6, 4, 4)


@pytest.mark.parametrize("pairs, runs", [
    ([(0, 0), (1, 1), (2, 2)], [(0, 1, 0, 3)]),
    ([(0, 0), (2, 1), (4, 2)], [(0, 2, 0, 3)]),              # receiver 0 of 2, round robin
    ([(1, 0), (3, 1), (5, 2), (6, 3)], [(1, 2, 0, 3), (6, 1, 3, 1)]),
    ([(7, 0)], [(7, 1, 0, 1)]),
])
def test_lima2_round_robin_frames_are_strided_runs(pairs, runs):
    frames, indices = zip(*pairs)
    assert progressions(np.array(frames), np.array(indices)) == runs


def test_lima2_master_sources_become_one_strided_source_per_file():
    sources = [([0, 2, 4], "p_0_00000.h5", "/e/i/d/data", [0, 1, 2], (3, 1, 8, 10)),
               ([1, 3], "p_1_00000.h5", "/e/i/d/data", [0, 1], (2, 1, 8, 10))]
    vds = master_vds(sources, "/data/scan1", "/data", 5, (8, 10), "<u2", 0)
    assert isinstance(vds, VirtualDataset) and vds.shape == [5, 8, 10]
    first, second = vds.virtual_sources
    assert first.src_file == "scan1/p_0_00000.h5"       # relative: below our file's folder
    assert (first.vspace.start, first.vspace.stride, first.vspace.count) == ([0, 0, 0], [2, 1, 1], [3, 8, 10])
    assert (first.src_space.start, first.src_space.count) == ([0, 0, 0, 0], [3, 1, 8, 10])
    assert second.vspace.start == [1, 0, 0] and second.vspace.count == [2, 8, 10]


def test_lima2_counts_repeat_and_the_largest_wins():
    k = kinds.handler(describe_stream("l2:frame", {"plugin": "lima2", "master_file": ["/d/p_master.h5", "e/i/d/data"],
                                                   "dtype": "uint16", "shape": [8, 10]},
                                      {"type": "numeric", "dtype_str": "<u4", "shape": []}))
    k.on_events([0, 1, 1, 3, 3])
    assert k.progress() == 3
    # the master first; the receivers only if it is missing
    first = k.files_needed({})
    assert [q.path for q in first] == ["/d/p_master.h5", "/d/p_master.h5"]
    assert first[0].dataset == "/e/i/d/data"
    missing = {q: [FileFacts(q.path, q.dataset, exists=False)] for q in first}
    again = k.files_needed(missing)
    assert len(again) == 1 and again[0].pattern == "/d/p_*_*.h5"


MOSCA = {"plugin": "mosca", "detector": 3, "data_index": 1, "dtype": "uint32", "shape": [16],
         "mosca_info": {"file_path": "/d", "file_prefix": "m_", "data_path": "/entry_0000/m/data",
                        "points_per_file": 4, "saving_enabled": True}}


def test_mosca_spectra_follow_points_per_file():
    dataset = "/entry_0000/m/data/spectra_03"
    assert spectra_runs(MOSCA, 6) == [(0, 4, "/d/m_spectra_0000.h5", dataset, 0),
                                      (4, 2, "/d/m_spectra_0001.h5", dataset, 0)]
    # only what the files hold; nothing after a short file
    assert spectra_runs(MOSCA, 10, {"/d/m_spectra_0000.h5": 3, "/d/m_spectra_0001.h5": 4}) == [
        (0, 3, "/d/m_spectra_0000.h5", dataset, 0)]
    assert spectra_runs(MOSCA, 6, {"/d/m_spectra_0000.h5": 4, "/d/m_spectra_0001.h5": 1})[-1] == (
        4, 1, "/d/m_spectra_0001.h5", dataset, 0)


def test_mosca_reads_the_files_for_every_point_read():
    k = kinds.handler(describe_stream("m:spectrum:spec_det03", MOSCA, JSON))
    k.on_events([{"last_read_index": 5, "last_saved_index": 3}])
    queries = k.files_needed({})
    assert {q.path for q in queries} == {"/d/m_spectra_0000.h5", "/d/m_spectra_0001.h5"}
    assert all(isinstance(q, FileQuery) for q in queries)


def test_unsupported_kind_is_never_accounted():
    k = kinds.handler(describe_stream("f:x", {"plugin": "future"}, NUM))
    out = k.finish(kinds.Context(entry="1.1", channel=None, file_dir="", info={}))
    assert not out.accounted and "future" in out.warnings[0] and "f:x" in out.warnings[0]


def test_sequence_children_trimmed_from_redis_are_missing():
    k = kinds.handler(describe_stream("SUBSCANS", {"plugin": "scan_sequence", "format": "subscan"}, JSON))
    k.on_events([{"key": "esrf:scan:b", "scan_number": 5}], lost=1)
    out = k.finish(kinds.Context(entry="4.1", channel=None, file_dir="", info={}))
    assert k.children == [("esrf:scan:b", 5)]
    assert (out.written, out.missing) == (0, 1) and "trimmed" in out.warnings[0]


def test_lima2_round_robin_skips_receiver_files_without_frames():
    """Rank 0 saved nothing before the conductor died: rank 1's frames are all there is."""
    from nexus_writer_service.kinds.lima2 import _round_robin

    def facts(path, n):
        return FileFacts(path, "/e/i/d/data", exists=True, shape=(n, 4, 4), dtype="<u2")

    sources, frame_shape, dtype, saved = _round_robin([facts("/x/s_0_00000.h5", 0), facts("/x/s_1_00000.h5", 3),
                                                       facts("/x/s_1_00001.h5", 2)])
    assert saved == 5 and frame_shape == (4, 4) and dtype == "<u2"
    assert [(list(v), f, list(i)) for v, f, _, i, _ in sources] == [
        ([0, 1, 2], "/x/s_1_00000.h5", [0, 1, 2]), ([3, 4], "/x/s_1_00001.h5", [0, 1])]
