"""The stream kinds alone (no Redis, no files): classification, the traits each kind
gives the other layers, where each kind's stream lands, and each kind's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from nexus_writer_service.h5map import VirtualDataset

from nexus_writer_service import kinds
from nexus_writer_service.descriptions import FileFacts, FileQuery, KindTraits, ScanDescription, describe_stream
from nexus_writer_service.mapping.layout import final_tree, plan_scan, start_tree
from nexus_writer_service.nxnodes import get, nx_class
from nexus_writer_service.simulation.recording import load_recording
from describing import describe
from kind_plugin import PLUGIN, installed_toy_kind
from nexus_writer_service.kinds.frames import FrameRef
from nexus_writer_service.kinds.lima import frame_references
from nexus_writer_service.kinds.lima2 import _receiver_mappings, master_vds, progressions
from nexus_writer_service.kinds.mosca import spectra_runs
from nexus_writer_service.vds_mapping import VdsMapping

NUM = {"type": "numeric", "dtype_str": "<f8", "shape": []}
JSON = {"type": "json"}


@pytest.mark.parametrize("info, encoding, kind", [
    ({"dtype": "float64", "shape": []}, NUM, "numeric"),
    ({"plugin": "hdf5_fallback", "data_path": "1.1/instrument/d/data"}, NUM, "hdf5_fallback"),
    ({"data_path": "1.1/instrument/d/data"}, NUM, "hdf5_fallback"),  # blissdata < 2 file-backed
    ({"plugin": "lima", "format": "lima_v1", "lima_info": {}}, JSON, "lima"),
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


def test_a_plugin_named_by_the_transport_chooses_the_kind():
    """An older blissdata names the plugin elsewhere than ``info["plugin"]``: the transport
    reads it (``blissdata_api.plugin_name``) and passes it."""
    stream = describe_stream("x:y", {"format": "lima_v1"}, JSON, plugin="lima")
    assert (stream.plugin, kinds.kind_of(stream).name) == ("lima", "lima")


@pytest.mark.parametrize("info, encoding, kind, dtype, shape", [
    # plain numeric: the encoding's (the events are the points)
    ({"dtype": "float32", "shape": [3]}, {"type": "numeric", "dtype_str": "<u2", "shape": [4, 5]},
     "numeric", "<u2", (4, 5)),
    # file-backed numeric, a plugin that is still the points: the encoding's
    ({"plugin": "hdf5_fallback", "data_path": "1.1/instrument/d/data", "dtype": "float32", "shape": []},
     {"type": "numeric", "dtype_str": "<i4", "shape": [2]}, "hdf5_fallback", "<i4", (2,)),
    # lima2's numeric events are frame counts: the frames are the info's
    ({"plugin": "lima2", "protocol_version": 2, "dtype": "uint16", "shape": [8, 10]},
     {"type": "numeric", "dtype_str": "<u4", "shape": []}, "lima2", "<u2", (8, 10)),
    # JSON statuses: the info's
    ({"plugin": "lima", "lima_info": {}, "dtype": "uint16", "shape": [4, 5]}, JSON, "lima", "<u2", (4, 5)),
])
def test_the_kind_chooses_whose_dtype_and_shape_describe_the_points(info, encoding, kind, dtype, shape):
    stream = kinds.classify(ScanDescription("k", "s", 1, "s", {}, [describe_stream("x:y", info, encoding)])).streams[0]
    assert (stream.kind, stream.dtype, stream.shape) == (kind, dtype, shape)
    assert (kinds.handler(describe_stream("x:y", info, encoding)).stream.dtype,
            kinds.handler(describe_stream("x:y", info, encoding)).stream.shape) == (dtype, shape)


LIMA = {"file_path": "/d/img_%04d.h5", "data_path": "/entry_0000/measurement/data",
        "file_format": "HDF5", "file_offset": 3, "frame_per_file": 2, "frame_per_acquisition": 5}
LIMA2 = {"plugin": "lima2", "master_file": ["/d/p_master.h5", "e/i/d/data"], "dtype": "uint16", "shape": [8, 10]}
MOSCA = {"plugin": "mosca", "detector": 3, "data_index": 1, "dtype": "uint32", "shape": [16],
         "mosca_info": {"file_path": "/d", "file_prefix": "m_", "data_path": "/entry_0000/m/data",
                        "points_per_file": 4, "saving_enabled": True}}
U4 = {"type": "numeric", "dtype_str": "<u4", "shape": []}

#: one stream of each kind: (name, info, encoding), its traits, and its place in entry 24.1
#: (group, field, NX class, role), None for the kinds without a channel
EACH_KIND = [
    ("diode9", {}, NUM, KindTraits("numeric", appends=True),
     ("diode9", "data", "NXdetector", "counter")),
    ("sim:x", {"plugin": "hdf5_fallback", "data_path": "24.1/instrument/simx/value"}, NUM,
     KindTraits("hdf5_fallback", appends=True, data_path="24.1/instrument/simx/value"),
     ("simx", "value", "NXdetector", "counter")),
    ("cam:image", {"plugin": "lima", "lima_info": LIMA, "dtype": "uint16", "shape": [4, 5]}, JSON,
     KindTraits("lima", role="frames"), ("cam", "data", "NXdetector", "frames")),
    ("l2:frame", LIMA2, U4, KindTraits("lima2", role="frames", live_group=True),
     ("l2", "data", "NXdetector", "frames")),
    ("m:spectrum:spec_det03", MOSCA, JSON, KindTraits("mosca", role="spectrum_files", live_group=True),
     ("m_det03", "spectrum", "NXdetector", "spectrum_files")),
    ("logger:events", {}, JSON, KindTraits("json", role="events"),
     ("logger", "events", "NXcollection", "events")),
    ("SUBSCANS", {"plugin": "scan_sequence", "format": "subscan"}, JSON,
     KindTraits("scan_sequence", has_channel=False, child_scans=True), None),
    ("f:x", {"plugin": "future"}, NUM,
     KindTraits("unsupported", has_channel=False,
                unsaved_reason="blissdata plugin 'future': stream kind not written by this writer version"), None),
]


def _scan_with(*streams) -> ScanDescription:
    """03_ascan (scan 24) with ``streams`` added (name, info, encoding), classified."""
    desc = describe(load_recording("03_ascan"))
    desc.streams.extend(describe_stream(name, info, enc) for name, info, enc in streams)
    return kinds.classify(desc)


@pytest.mark.parametrize("name, info, encoding, traits, place", EACH_KIND, ids=[k[3].name for k in EACH_KIND])
def test_each_kind_gives_its_traits_and_its_place(name, info, encoding, traits, place):
    desc = _scan_with((name, info, encoding))
    stream = next(s for s in desc.streams if s.name == name)
    assert (stream.kind, stream.traits) == (traits.name, traits)
    plan = plan_scan(desc)
    if place is None:
        assert name not in [c.stream for c in plan.channels]
        assert plan.skipped.get(name) == traits.unsaved_reason
        assert plan.subscan_streams == ([name] if traits.child_scans else [])
        return
    ch = plan.channel(name)
    assert (ch.entry, ch.group, ch.field, ch.nx_class, ch.role) == ("24.1", *place)
    assert (ch in plan.streamed, ch in plan.referenced) == (traits.appends, not traits.appends)
    tree = start_tree(desc, plan.entries[0])
    instrument = tree.children["instrument"].children
    if traits.appends:  # a growing dataset of the stream's points, linked from measurement
        node = instrument[ch.group].children[ch.field]
        assert (node.value.type, node.value.stream, ch.dtype, ch.point_shape) == ("stream", name, "<f8", ())
        assert tree.children["measurement"].children[ch.short_name].target_path == f"/24.1/{ch.path}"
    elif traits.live_group:  # the group its live views grow in, made with the entry
        assert (list(instrument[ch.group].children), nx_class(instrument[ch.group])) == ([], "NXdetector")
    else:  # the kind adds everything at the end
        assert ch.group not in instrument and ch.short_name not in tree.children["measurement"].children


def test_json_events_are_one_document_each_at_their_place():
    desc = _scan_with(("logger:events", {}, JSON))
    plan = plan_scan(desc)
    ch = plan.channel("logger:events")
    k = kinds.handler(next(s for s in desc.streams if s.name == "logger:events"))
    k.on_events([{"b": 1, "a": [2]}, "x"], lost=1)
    out = k.finish(kinds.Context(entry="24.1", channel=ch, file_dir="", info={}))
    assert sorted(out.nodes) == ["instrument/logger/events", "measurement/logger_events"]
    assert list(out.nodes["instrument/logger/events"].value.root) == ["", '{"a": [2], "b": 1}', '"x"']
    assert out.nodes["measurement/logger_events"].target_path == "/24.1/instrument/logger/events"
    assert (out.written, out.missing, out.accounted) == (2, 1, True)
    assert out.warnings == ["logger:events: 1 events trimmed from Redis before they were saved"]


def test_a_kind_from_an_entry_point_is_classified_and_placed(tmp_path):
    """A kind another package publishes (entry point group ``nexus_writer_service.kinds``):
    found, tried by its priority, placed by its traits; gone again after the test."""
    shipped = [k.name for k in kinds._KINDS]
    with installed_toy_kind(tmp_path):
        toy = kinds.kind_of(describe_stream("toy:toy1", {"plugin": PLUGIN}, JSON))
        assert (toy.__module__, toy.__name__, toy.name) == ("nxw_toy_kind", "ToyCounter", PLUGIN)
        assert kinds.kind_of(describe_stream("a", {}, JSON)).name == "json"  # the others are unchanged
        desc = _scan_with(("toy:toy1", {"plugin": PLUGIN}, JSON))
        stream = next(s for s in desc.streams if s.name == "toy:toy1")
        assert stream.traits == KindTraits(PLUGIN)
        ch = plan_scan(desc).channel("toy:toy1")
        assert (ch.group, ch.field, ch.nx_class, ch.role, ch.short_name) == (
            "toy1", "data", "NXdetector", "counter", "toy1")
        k = kinds.handler(stream)
        k.on_events([[1, 2], [3]])
        out = k.finish(kinds.Context(entry="24.1", channel=ch, file_dir="", info={}))
        tree = final_tree(desc, plan_scan(desc).entries[0], desc.info, {"toy:toy1": 3, "axis:robx": 3},
                          "SUCCEEDED", [], outcomes={"toy:toy1": out})
        assert list(get(tree, "instrument/toy1/data").value.root) == [1.0, 2.0, 3.0]
        assert nx_class(get(tree, "instrument/toy1")) == "NXdetector"
        assert get(tree, "measurement/toy1").target_path == "/24.1/instrument/toy1/data"
    assert [k.name for k in kinds._KINDS] == shipped
    assert kinds.kind_of(describe_stream("toy:toy1", {"plugin": PLUGIN}, JSON)).name == "unsupported"


@pytest.mark.parametrize("frame, file, index", [
    (0, "/d/img_0003.h5", 0), (1, "/d/img_0003.h5", 1), (2, "/d/img_0004.h5", 0),
    (4, "/d/img_0005.h5", 0),   # last frame of the first acquisition: a file of its own
    (5, "/d/img_0006.h5", 0),   # second acquisition starts a new file
    (8, "/d/img_0007.h5", 1),
])
def test_lima_frame_references(frame, file, index):
    assert frame_references(LIMA, frame + 1)[frame] == FrameRef("HDF5", file, LIMA["data_path"], index)


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
    sources = [VdsMapping([0, 2, 4], "p_0_00000.h5", "/e/i/d/data", [0, 1, 2], (3, 1, 8, 10), (8, 10)),
               VdsMapping([1, 3], "p_1_00000.h5", "/e/i/d/data", [0, 1], (2, 1, 8, 10), (8, 10))]
    vds = master_vds(sources, "/data/scan1", "/data", 5, (8, 10), "<u2", 0)
    assert (type(vds), vds.dtype, vds.shape) == (VirtualDataset, "<u2", [5, 8, 10])
    first, second = vds.virtual_sources
    assert first.src_file == "scan1/p_0_00000.h5"       # relative: below our file's folder
    assert (first.vspace.start, first.vspace.stride, first.vspace.count) == ([0, 0, 0], [2, 1, 1], [3, 8, 10])
    assert (first.src_space.start, first.src_space.count) == ([0, 0, 0, 0], [3, 1, 8, 10])
    assert second.vspace.start == [1, 0, 0] and second.vspace.count == [2, 8, 10]


def test_lima2_counts_repeat_and_the_largest_wins():
    k = kinds.handler(describe_stream("l2:frame", LIMA2, U4))
    k.on_events([0, 1, 1, 3, 3])
    assert k.progress() == 3
    # the master first; the receivers only if it is missing
    first = k.files_needed({})
    assert [q.path for q in first] == ["/d/p_master.h5", "/d/p_master.h5"]
    assert first[0].dataset == "/e/i/d/data"
    missing = {q: [FileFacts(q.path, q.dataset, exists=False)] for q in first}
    again = k.files_needed(missing)  # the receivers' frames and where each frame goes
    assert [(q.pattern, q.dataset, q.what) for q in again] == [("/d/p_*_*.h5", "/e/i/d/data", "dataset"),
                                                               ("/d/p_*_*.h5", "/e/i/d/frame_idx", "values")]


def test_mosca_spectra_follow_points_per_file():
    dataset = "/entry_0000/m/data/spectra_03"
    assert spectra_runs(MOSCA, 6) == [VdsMapping.run(0, 4, "/d/m_spectra_0000.h5", dataset, 0),
                                      VdsMapping.run(4, 2, "/d/m_spectra_0001.h5", dataset, 0)]
    # only what the files hold; nothing after a short file
    assert spectra_runs(MOSCA, 10, {"/d/m_spectra_0000.h5": 3, "/d/m_spectra_0001.h5": 4}) == [
        VdsMapping.run(0, 3, "/d/m_spectra_0000.h5", dataset, 0)]
    assert spectra_runs(MOSCA, 6, {"/d/m_spectra_0000.h5": 4, "/d/m_spectra_0001.h5": 1})[-1] == \
        VdsMapping.run(4, 1, "/d/m_spectra_0001.h5", dataset, 0)


def test_mosca_reads_the_files_for_every_point_read():
    k = kinds.handler(describe_stream("m:spectrum:spec_det03", MOSCA, JSON))
    k.on_events([{"last_read_index": 5, "last_saved_index": 3}])
    assert k.files_needed({}) == [FileQuery("/d/m_spectra_0000.h5", "/entry_0000/m/data/spectra_03"),
                                  FileQuery("/d/m_spectra_0001.h5", "/entry_0000/m/data/spectra_03")]


def test_unsupported_kind_is_never_accounted():
    k = kinds.handler(describe_stream("f:x", {"plugin": "future"}, NUM))
    out = k.finish(kinds.Context(entry="1.1", channel=None, file_dir="", info={}))
    assert (out.accounted, out.written, out.missing, out.nodes) == (False, 0, 0, {})
    assert out.warnings == ["stream 'f:x' published but not written "
                            "(blissdata plugin 'future': stream kind not written by this writer version)"]


def test_sequence_children_trimmed_from_redis_are_missing():
    k = kinds.handler(describe_stream("SUBSCANS", {"plugin": "scan_sequence", "format": "subscan"}, JSON))
    k.on_events([{"key": "esrf:scan:b", "scan_number": 5}], lost=1)
    out = k.finish(kinds.Context(entry="4.1", channel=None, file_dir="", info={}))
    assert k.child_scans() == [("esrf:scan:b", 5)]
    assert (out.written, out.missing, out.nodes) == (0, 1, {})
    assert out.warnings == ["SUBSCANS: 1 child scans announced but trimmed from Redis before they were read: not linked"]


def _receiver(path, n):
    return FileFacts(path, "/e/i/d/data", exists=True, shape=(n, 4, 4), dtype="<u2")


def test_lima2_round_robin_skips_receiver_files_without_frames():
    """Rank 0 saved nothing before the conductor died: rank 1's frames are all there is
    (placed by an assumption: the order is not known)."""
    sources, frame_shape, dtype, saved, known = _receiver_mappings(
        [_receiver("/x/s_0_00000.h5", 0), _receiver("/x/s_1_00000.h5", 3), _receiver("/x/s_1_00001.h5", 2)], {})
    assert (saved, frame_shape, dtype, known) == (5, (4, 4), "<u2", False)
    assert sources == [VdsMapping([0, 1, 2], "/x/s_1_00000.h5", "/e/i/d/data", [0, 1, 2], (3, 4, 4), (4, 4)),
                       VdsMapping([3, 4], "/x/s_1_00001.h5", "/e/i/d/data", [0, 1], (2, 4, 4), (4, 4))]


def test_lima2_receivers_frame_idx_places_every_frame():
    """Dynamic dispatch: each receiver says which frames it got; a file without its
    frame_idx (or indices that collide) leaves the order unknown."""
    files = [_receiver("/x/s_0_00000.h5", 2), _receiver("/x/s_1_00000.h5", 3)]
    idx = {"/x/s_0_00000.h5": np.array([4, 1]), "/x/s_1_00000.h5": np.array([0, 2, 3])}
    sources, _, _, saved, known = _receiver_mappings(files, idx)
    assert (saved, known) == (5, True)
    assert sources == [VdsMapping([4, 1], "/x/s_0_00000.h5", "/e/i/d/data", [0, 1], (2, 4, 4), (4, 4)),
                       VdsMapping([0, 2, 3], "/x/s_1_00000.h5", "/e/i/d/data", [0, 1, 2], (3, 4, 4), (4, 4))]
    assert _receiver_mappings(files, {"/x/s_0_00000.h5": np.array([4, 1])})[4] is False
    assert _receiver_mappings(files, {**idx, "/x/s_1_00000.h5": np.array([0, 1, 3])})[4] is False
    assert _receiver_mappings(files, {**idx, "/x/s_1_00000.h5": np.array([0, 2, 5])})[4] is False  # beyond
    assert _receiver_mappings(files, {**idx, "/x/s_1_00000.h5": np.array([0, 2, 5])}, acquired=6)[4] is True
