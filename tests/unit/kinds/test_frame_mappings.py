"""Frames in detector files as VdsMapping runs: single-frame references only for URLs."""

from __future__ import annotations

from nexus_writer_service.kinds.frames import FrameRef, Frames, as_runs, frames_vds, mappings_of, uris
from nexus_writer_service.vds_mapping import VdsMapping


def test_frame_references_become_one_mapping_per_run_in_a_file():
    refs = [FrameRef("HDF5", "/d/a.h5", "/data", 0), FrameRef("HDF5", "/d/a.h5", "/data", 1),
            FrameRef("HDF5", "/d/b.h5", "/data", 0), FrameRef("HDF5", "/d/b.h5", "/data", 2)]
    assert mappings_of(refs) == [VdsMapping.run(0, 2, "/d/a.h5", "/data", 0), VdsMapping.run(2, 1, "/d/b.h5", "/data", 0),
                                 VdsMapping.run(3, 1, "/d/b.h5", "/data", 2)]


def test_strided_mappings_are_cut_into_runs_in_the_scans_order():
    receivers = [VdsMapping([0, 2, 4], "/d/r0.h5", "/f", [0, 1, 2]), VdsMapping([1, 3], "/d/r1.h5", "/f", [0, 1])]
    runs = as_runs(receivers)
    assert [(r.frames.tolist(), r.src_file, r.src_frames.tolist()) for r in runs] == [
        ([0], "/d/r0.h5", [0]), ([1], "/d/r1.h5", [0]), ([2], "/d/r0.h5", [1]), ([3], "/d/r1.h5", [1]),
        ([4], "/d/r0.h5", [2])]


def test_urls_follow_the_scans_frames():
    frames = Frames(3, "uint16", (2, 2), [VdsMapping([0, 2], "/d/r0.h5", "/f", [5, 6]),
                                          VdsMapping([1], "/d/r1.h5", "/f", [0])], "HDF5")
    assert uris(frames, "/d") == ["silx:r0.h5?path=/f&slice=5", "silx:r1.h5?path=/f&slice=0",
                                  "silx:r0.h5?path=/f&slice=6"]
    edf = Frames(2, "uint16", (2, 2), [VdsMapping.run(0, 2, "/e/x.edf", "", 3)], "EDF")
    assert uris(edf, "/d") == ["fabio:/e/x.edf?slice=3", "fabio:/e/x.edf?slice=4"]


def test_a_mesh_places_strided_frames_where_their_index_says():
    frames = Frames(4, "uint16", (2, 3), [VdsMapping([0, 2], "/d/r0.h5", "/f", [0, 1]),
                                          VdsMapping([1, 3], "/d/r1.h5", "/f", [0, 1])], "HDF5")
    vds = frames_vds(frames, "/d", mesh=(2, 2))
    assert vds.shape == [2, 2, 2, 3]
    assert [(s.src_file, s.vspace.start, s.src_space.start) for s in vds.virtual_sources] == [
        ("r0.h5", [0, 0, 0, 0], [0, 0, 0]), ("r1.h5", [0, 1, 0, 0], [0, 0, 0]),
        ("r0.h5", [1, 0, 0, 0], [1, 0, 0]), ("r1.h5", [1, 1, 0, 0], [1, 0, 0])]
    assert frames.saved == 4
