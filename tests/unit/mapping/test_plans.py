"""The mapping layer alone: scan_info + stream descriptions -> NeXus tree plan."""

from __future__ import annotations

import pytest
from nexus_writer_service.h5map import Group, SoftLink, Stream, VirtualDataset

from nexus_writer_service.descriptions import StreamDescription
from nexus_writer_service.kinds import classify
from nexus_writer_service.mapping.layout import final_tree, plan_scan, start_tree
from nexus_writer_service.nxnodes import NAME_RE, is_safe_relative_path, safe_name
from nexus_writer_service.simulation.recording import load_recording
from nexus_writer_service.simulation.synthetic import multi_top_master
from describing import describe


@pytest.mark.parametrize("fixture, stream, path, short", [
    ("03_ascan", "axis:robx", "24.1/instrument/robx/value", "robx"),
    ("03_ascan", "simulation_diode_sampling_controller:diode1", "24.1/instrument/diode1/signal", "diode1"),
    ("03_ascan", "timer:elapsed_time", "24.1/instrument/elapsed_time/data", "elapsed_time"),
    ("10_loopscan_mca", "timer:elapsed_time", "31.1/instrument/elapsed_time/value", "elapsed_time"),
    ("10_loopscan_mca", "simu1:spectrum_det0", "31.1/instrument/simu1_det0/spectrum", "simu1_det0"),
    ("10_loopscan_mca", "simu1:realtime_det2", "31.1/instrument/simu1_det2/elapsed_time", "simu1_det2_elapsed_time"),
    ("10_loopscan_mca", "simu1:deadtime_det3", "31.1/instrument/simu1_det3/fractional_dead_time",
     "simu1_det3_fractional_dead_time"),
    # writer 'null': no data_path announced, the same conventions are derived
    ("33_null_ascan", "axis:robx", "51.1/instrument/robx/value", "robx"),
    ("33_null_ascan", "simulation_diode_sampling_controller:diode2", "51.1/instrument/diode2/data", "diode2"),
    ("12_ct_mca", "simu1:spectrum_det1", "2.1/instrument/simu1_det1/spectrum", "simu1_det1"),
    ("12_ct_mca", "simu1:icr_det0", "2.1/instrument/simu1_det0/trigger_count_rate",
     "simu1_det0_trigger_count_rate"),
])
def test_channel_places(fixture, stream, path, short):
    plan = plan_scan(describe(load_recording(fixture)))
    ch = plan.channel(stream)
    assert f"{ch.entry}/{ch.path}" == path
    assert ch.short_name == short


def test_announced_data_path_outside_the_entry_is_refused():
    rec = load_recording("03_ascan")
    rec.stream("axis:robx").info["data_path"] = "24.1/../../etc/robx"
    plan = plan_scan(describe(rec))
    assert plan.channel("axis:robx").path == "instrument/robx/value"
    assert any("not usable" in w for w in plan.warnings)


@pytest.mark.parametrize("raw, expected", [
    ("diode1", "diode1"), ("a/b c", "a_b_c"), ("../../evil", "evil"), ("..", "unnamed"),
    ("x.y", "x_y"), ("é", "unnamed"), ("_a_", "a"),
])
def test_safe_names(raw, expected):
    assert safe_name(raw) == expected
    assert NAME_RE.match(safe_name(raw))


@pytest.mark.parametrize("path, ok", [
    ("instrument/robx/value", True), ("instrument/../x", False), ("/abs", False), ("a//b", False),
])
def test_relative_paths(path, ok):
    assert is_safe_relative_path(path) is ok


def test_start_tree_holds_stream_datasets_and_measurement_links():
    desc = describe(load_recording("03_ascan"))
    plan = plan_scan(desc)
    tree = start_tree(desc, plan.entries[0])
    assert tree.attributes["NX_class"].root == "NXentry"
    robx = tree.children["instrument"].children["robx"]
    assert robx.attributes["NX_class"].root == "NXpositioner"
    assert robx.children["value"].value == Stream(stream="axis:robx")
    assert robx.children["value"].attributes["units"].root == "mm"
    diode = tree.children["instrument"].children["diode1"]
    assert diode.children["data"] == SoftLink(target_path="/24.1/instrument/diode1/signal")
    assert tree.children["measurement"].children["diode1"].target_path == "/24.1/instrument/diode1/signal"


def test_mesh_plot_is_a_2d_view_of_the_flat_data():
    rec = load_recording("07_amesh")
    desc = describe(rec)
    plan = plan_scan(desc)
    lengths = {s.name: len(s.data) for s in rec.streams}
    tree = final_tree(desc, plan.entries[0], rec.info_final, lengths, "SUCCEEDED", [])
    plot = tree.children["plotselect"]
    assert tree.attributes["default"] == "plotselect"
    assert list(plot.attributes["axes"].root) == ["roby", "robx"]
    signal = plot.children[str(plot.attributes["signal"].root)]
    assert (type(signal), signal.dtype, signal.shape) == (VirtualDataset, "<f8", [3, 4])
    assert {vs.src_dataset for vs in signal.virtual_sources} == {"/28.1/instrument/diode1/signal"}
    rows = [(vs.vspace.start, vs.vspace.count, vs.src_space.start, vs.src_space.count)
            for vs in signal.virtual_sources]
    assert rows == [([0, 0], [1, 4], [0], [4]), ([1, 0], [1, 4], [4], [4]), ([2, 0], [1, 4], [8], [4])]
    roby = plot.children["roby"]  # the slow motor: every 4th point of the flat array
    assert [vs.src_space.start for vs in roby.virtual_sources] == [[0], [4], [8]]
    assert [vs.vspace.start for vs in roby.virtual_sources] == [[0], [1], [2]]


def test_partial_mesh_maps_only_acquired_points():
    rec = load_recording("07_amesh")
    desc = describe(rec)
    plan = plan_scan(desc)
    lengths = {s.name: 6 for s in rec.streams}  # aborted after 6 of 12 points
    tree = final_tree(desc, plan.entries[0], rec.info_final, lengths, "SUCCEEDED", [])
    signal = tree.children["plotselect"].children["diode1"]
    assert [vs.vspace.count for vs in signal.virtual_sources] == [[1, 4], [1, 2]]


def test_unequal_lengths_are_trimmed_in_the_plot_only():
    rec = load_recording("21_ascan_abort")
    desc = describe(rec)
    plan = plan_scan(desc)
    lengths = {s.name: len(s.data) for s in rec.streams}
    lengths["simulation_diode_sampling_controller:diode2"] = 3
    tree = final_tree(desc, plan.entries[0], rec.info_final, lengths, "SUCCEEDED", [])
    plot = tree.children["plotselect"]
    assert plot.children["diode2"] == SoftLink(target_path=f"/{plan.entries[0].name}/instrument/diode2/signal")
    diode1 = plot.children["diode1"]
    assert (type(diode1), diode1.dtype, diode1.shape) == (VirtualDataset, "<f8", [3])
    assert [(vs.src_dataset, vs.src_space.start, vs.src_space.count) for vs in diode1.virtual_sources] == [
        (f"/{plan.entries[0].name}/instrument/diode1/signal", [i], [1]) for i in range(3)]


def test_user_metadata_categories_follow_nexus_dict_conventions():
    rec = load_recording("19_ascan_usermeta")
    desc = describe(rec)
    plan = plan_scan(desc)
    tree = final_tree(desc, plan.entries[0], rec.info_final, {}, "SUCCEEDED", [])
    sample = tree.children["sample"]
    assert sample.attributes["NX_class"].root == "NXsample"
    assert sample.children["name"].value.root == "LaB6"
    mono = tree.children["instrument"].children["monochromator"]
    assert mono.attributes["NX_class"].root == "NXmonochromator"
    assert mono.children["energy"].attributes["units"].root == "keV"
    assert tree.children["technique"].children["technique"].value.root == "XRD"
    # comments as ESRF's writer 2.0 writes them (reference layout of entry 37.1)
    notes = tree.children["notes"]
    assert notes.attributes["NX_class"].root == "NXnote"  # NXentry/notes (ESRF: NXcollection)
    assert list(notes.children) == ["note_01", "note_02"]
    got = {name: {k: v.value.root for k, v in note.children.items()} for name, note in notes.children.items()}
    assert got == {
        "note_01": {"data": "first comment before run", "type": "text/plain",
                    "date": "2026-11-24T05:33:55.961296+00:00"},
        "note_02": {"data": "comment during run", "type": "text/plain",
                    "date": "2026-11-24T05:33:56.011586+00:00"},
    }


def test_multi_top_master_gives_one_entry_per_chain():
    plan = plan_scan(describe(multi_top_master()))
    assert [(e.name, e.master) for e in plan.entries] == [("24.1", "axis"), ("24.2", "fast_timer")]
    assert [c.short_name for c in plan.entries[1].channels] == ["elapsed_time", "epoch", "diode2"]


def test_streams_of_unknown_kind_are_reported_not_dropped_silently():
    rec = load_recording("03_ascan")
    desc = describe(rec)
    desc.streams.append(StreamDescription("cam:image", "lima", "<u2", (10, 10), {"plugin": "lima"}, "json", "lima"))
    desc.streams.append(StreamDescription("weird", "unsupported", info={"plugin": "weird"}, encoding="json", plugin="weird"))
    plan = plan_scan(classify(desc))
    assert set(plan.skipped) == {"weird"}
    assert sum("not written" in w for w in plan.warnings) == 1
    lima = plan.channel("cam:image")  # lima frames are referenced, not streamed
    assert (lima.role, lima.group, lima.field) == ("frames", "cam", "data")
    assert lima not in plan.streamed


def test_ragged_channel_plan():
    rec = load_recording("03_ascan")
    desc = describe(rec)
    desc.streams.append(StreamDescription("mca:spectrum_var", "numeric", "<f4", (-1,), {}))
    ch = plan_scan(classify(desc)).channel("mca:spectrum_var")
    assert ch.ragged and ch.interpretation == "spectrum"
    assert ch.fill_value != ch.fill_value  # NaN for floats


def test_start_tree_of_every_fixture_is_valid_h5map():
    from nexus_writer_service.simulation.recording import fixture_names

    for name in fixture_names():
        rec = load_recording(name)
        desc = describe(rec)
        plan = plan_scan(desc)
        for entry in plan.entries:
            tree = start_tree(desc, entry)
            Group.model_validate(tree.model_dump())  # round-trips through the h5map model
            title = tree.children["title"]
            assert title.value.root == str(desc.info.get("title") or desc.name)
            assert tree.children["writer"].children["scan_key"].value.root == desc.key
            for ch in entry.channels:
                if ch not in plan.streamed:
                    continue
                node = tree.children["instrument"].children[ch.group].children[ch.field]
                assert node.value == Stream(stream=ch.stream), (name, ch)
                link = tree.children["measurement"].children[ch.short_name]
                assert link == SoftLink(target_path=f"/{entry.name}/{ch.path}"), (name, ch)
            # every numeric stream of the scan has its growing dataset in some entry
            streamed = {c.stream for c in plan.streamed}
            assert streamed == {s.name for s in desc.streams if s.traits.appends}
            assert [s.kind in ("numeric", "hdf5_fallback") for s in desc.streams] == [
                s.traits.appends for s in desc.streams]


def test_lima_roi_and_bpm_counters_go_under_the_detector():
    rec = load_recording("03_ascan")
    desc = describe(rec)
    desc.streams.append(StreamDescription("cam:image", "lima", "<u2", (10, 10), {"plugin": "lima"}, "json", "lima"))
    desc.streams.append(StreamDescription("cam:roi_counters:roi1_sum", "numeric", "<f8", (), {}))
    desc.streams.append(StreamDescription("cam:bpm:x", "numeric", "<f8", (), {}))
    plan = plan_scan(classify(desc))
    assert plan.channel("cam:roi_counters:roi1_sum").path == "instrument/cam/roi1_sum"
    assert plan.channel("cam:bpm:x").path == "instrument/cam/bpm_x"
    assert plan.channel("cam:roi_counters:roi1_sum").short_name == "cam_roi1_sum"
    assert plan.channel("cam:image").path == "instrument/cam/data"


@pytest.mark.parametrize("fixture, signal, auxiliary", [
    ("10_loopscan_mca", "diode1", None),        # not the 32 MCA statistics
    ("03_ascan", "diode1", ["diode2"]),
    ("12_ct_mca", "simu1_det0", ["simu1_det1", "simu1_det2", "simu1_det3"]),  # only an MCA: its spectra
])
def test_default_plot_signals(fixture, signal, auxiliary):
    rec = load_recording(fixture)
    desc = describe(rec)
    plan = plan_scan(desc)
    lengths = {s.name: len(s.data) for s in rec.streams}
    tree = final_tree(desc, plan.entries[0], rec.info_final, lengths, "SUCCEEDED", [])
    plot = tree.children[tree.attributes["default"]]
    assert plot.attributes["signal"].root == signal
    aux = plot.attributes.get("auxiliary_signals")
    assert (None if aux is None else list(aux.root)) == auxiliary


def test_user_metadata_attributes_without_a_name_are_dropped():
    # "energy@" parses as an attribute with an empty name, which HDF5 refuses (fuzz test)
    from nexus_writer_service.mapping.metadata import nxdict_to_group

    grp = nxdict_to_group({"energy": 7.0, "energy@": "keV", "energy@units": "keV", "@": 1, "@kind": "x"})
    assert set(grp.attributes) == {"NX_class", "kind"}
    assert set(grp.children["energy"].attributes) == {"units"}


@pytest.mark.parametrize("name, short, expected", [
    ("", "", None),  # every fixture: BLISS without an instrument name (ESRF writes "")
    ("ESRF-ID00", "id00", ("ESRF-ID00", "id00")),
    ("ESRF-ID00", "", ("ESRF-ID00", None)),
])
def test_instrument_name_only_when_given(name, short, expected):
    """instrument/name (@short_name) from the generators' instrument_info; an empty name
    says nothing and is left out (ESRF's writer writes it empty)."""
    rec = load_recording("03_ascan")
    info = {**rec.info_final, "nexuswriter": {**rec.info_final["nexuswriter"],
                                              "instrument_info": {"name": name, "name@short_name": short}}}
    desc = describe(rec, info)
    tree = final_tree(desc, plan_scan(desc).entries[0], info, {}, "SUCCEEDED", [])
    node = tree.children["instrument"].children.get("name")
    if expected is None:
        assert node is None
    else:
        short_attr = node.attributes.get("short_name")
        assert (node.value.root, short_attr.root if short_attr is not None else None) == expected


def test_scan_parameters_only_with_a_count_time():
    """scan_parameters/count_time (@units s) as ESRF's writer: absent without a count time
    (sequences) and for 0, as its ``if count_time`` does."""
    rec = load_recording("03_ascan")
    for count_time, expected in ((0.01, 0.01), (2, 2.0), (0, None), (None, None), (True, None)):
        info = {**rec.info_created, "count_time": count_time}
        desc = describe(rec, info)
        tree = start_tree(desc, plan_scan(desc).entries[0])
        params = tree.children.get("scan_parameters")
        if expected is None:
            assert params is None, count_time
        else:
            assert params.attributes["NX_class"].root == "NXparameters"
            assert params.children["count_time"].value.root == expected
            assert params.children["count_time"].attributes["units"].root == "s"


def test_device_metadata_beside_the_data_which_wins():
    """A device's metadata goes in its detector's group; a key that is not a NeXus name is
    made one, None is dropped, and a key named like a field the writer makes (lima's
    ``data``) leaves that field to the writer."""
    from nexus_writer_service.kinds import Outcome
    from nexus_writer_service.nxnodes import field, group
    from nexus_writer_service.simulation.lima import LimaDetector, add_lima

    rec = add_lima(load_recording("03_ascan"), LimaDetector(), "/nonexistent/scan0024")
    info = rec.info_final
    dev = info["channels"]["lima_simulator:image"]["device"]
    info["devices"][dev]["metadata"] = {"type": "lima", "data": "not the frames", "bad key": 1,
                                        "nothing": None, "acq_parameters": {"acq_expo_time": 0.5}}
    desc = describe(rec, info)
    entry = plan_scan(desc).entries[0]
    written = group("NXdetector", {"data": field("the frames")})  # what the lima kind adds
    tree = final_tree(desc, entry, info, {}, "SUCCEEDED", [],
                      outcomes={"lima_simulator:image": Outcome(nodes={"instrument/lima_simulator": written})})
    det = tree.children["instrument"].children["lima_simulator"]
    assert sorted(det.children) == ["acq_parameters", "bad_key", "data", "type"]
    assert det.children["data"].value.root == "the frames"
    assert det.children["type"].value.root == "lima"
    assert det.children["bad_key"].value.root == 1
    assert det.children["acq_parameters"].children["acq_expo_time"].value.root == 0.5
