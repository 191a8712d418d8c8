"""BLISS's h5maps merged into our plan: pure, from models (no Redis, no files)."""

from __future__ import annotations

from nexus_writer_service.h5map import (
    Dataset, ExternalLink, Group, Inline, SoftLink, SpaceSelection, Stream, VirtualDataset, VirtualSource,
)
from nexus_writer_service.mapping import h5maps
from nexus_writer_service.nxnodes import field, group, link, stream_field

PATH = "/data/visitor/x/scan.h5"


def _ours() -> Group:
    entry = group("NXentry", {
        "title": field("ascan robx 0 1 5 0.1"),
        "instrument": group("NXinstrument", {
            "diode1": group("NXdetector", {"signal": stream_field("c:diode1", units="V")}),
        }),
        "measurement": group("NXcollection", {"diode1": link("/1.1/instrument/diode1/signal")}),
        "writer": group("NXnote", {"status": field("WRITING")}),
    })
    return Group(children={"1.1": entry})


def _map(**extra) -> Group:
    entry = Group(attributes={"NX_class": "NXentry"}, children={
        "title": Dataset(value="ascan robx 0 1 5 0.1"),
        "instrument": Group(attributes={"NX_class": "NXinstrument"}, children={
            "diode1": Group(attributes={"NX_class": "NXdetector"}, children={
                "signal": Dataset(value=Stream(stream="c:diode1")),
                "data": SoftLink(target_path="signal"),
                "mode": Dataset(value="MEAN"),
            }),
        }),
        **extra,
    })
    return Group(children={"1.1": entry})


def _merge(the_map: Group, final: bool = False, exists=lambda name: True, ours: Group | None = None):
    return h5maps.merge(ours or _ours(), the_map, {"c:diode1": "/1.1/instrument/diode1/signal", "c:lima": "/1.1/instrument/lima/data"},
                        {"c:diode1"}, exists, final)


def test_file_map_picks_our_file_and_parses_json():
    info = {"h5maps": {PATH: _map().model_dump(mode="json"), "/data/visitor/x/other.h5": {"type": "group"}}}
    tree, warnings, notes = h5maps.file_map(info, "/data/visitor/x/./scan.h5")
    assert warnings == []
    assert notes == ["h5maps: /data/visitor/x/other.h5 is not the file written here (/data/visitor/x/./scan.h5): ignored"]
    assert list(tree.children) == ["1.1"]
    assert tree.children["1.1"].children["instrument"].children["diode1"].children["signal"].value == Stream(stream="c:diode1")


def test_file_map_absent_or_broken():
    assert h5maps.file_map({}, PATH) == (None, [], [])
    tree, warnings, _ = h5maps.file_map({"h5maps": {PATH: {"type": "group", "children": {"x": {"type": "soft_link"}}}}}, PATH)
    assert tree is None
    assert len(warnings) == 1
    assert warnings[0].startswith(f"scan_info['h5maps'][{PATH!r}] is not a valid h5map (")
    assert warnings[0].endswith("our layout alone is written")
    tree, warnings, _ = h5maps.file_map({"h5maps": [1]}, PATH)
    assert (tree, warnings) == (None, ["scan_info['h5maps'] is a list, not a mapping: ignored"])


def test_map_items_written_ours_beside_no_conflict():
    merged = _merge(_map())
    assert merged.conflicts == []
    assert merged.warnings == []
    det = merged.tree.children["1.1"].children["instrument"].children["diode1"]
    assert sorted(det.children) == ["data", "mode", "signal"]
    assert det.children["data"] == SoftLink(target_path="signal")
    signal = det.children["signal"]
    assert signal.value == Stream(stream="c:diode1")
    assert h5maps.same(signal.attributes["units"], "V")  # ours beside the map's
    entry = merged.tree.children["1.1"]
    assert sorted(entry.children) == ["instrument", "measurement", "title", "writer"]


def test_conflicts_go_the_maps_way_and_are_listed():
    the_map = _map(measurement=Group(attributes={"NX_class": "NXdata"}))
    the_map.children["1.1"].children["title"] = Dataset(value="from BLISS")
    the_map.children["1.1"].children["instrument"].children["diode1"].children["signal"] = \
        Dataset(value=Stream(stream="c:diode1"), attributes={"units": "mV"})
    merged = _merge(the_map)
    entry = merged.tree.children["1.1"]
    assert h5maps.same(entry.children["title"].value, "from BLISS")
    assert h5maps.same(entry.children["measurement"].attributes["NX_class"], "NXdata")
    assert "diode1" in entry.children["measurement"].children  # our link kept beside
    assert merged.conflicts == [
        "/1.1/title: dataset 'from BLISS' (ours: dataset 'ascan robx 0 1 5 0.1')",
        "/1.1/instrument/diode1/signal@units: 'mV' (ours: 'V')",
        "/1.1/measurement@NX_class: 'NXdata' (ours: 'NXcollection')",
    ]
    assert h5maps.conflict_warning(merged.conflicts).startswith(
        "h5maps: 3 item(s) of BLISS's map differ from the writer's layout, the map's written: /1.1/title:")


def test_type_conflict_keeps_the_maps_item():
    the_map = _map(title=Group(attributes={"NX_class": "NXcollection"}))
    merged = _merge(the_map)
    assert merged.tree.children["1.1"].children["title"] == Group(attributes={"NX_class": "NXcollection"})
    assert merged.conflicts == ["/1.1/title: group NXcollection (ours: dataset 'ascan robx 0 1 5 0.1')"]


def test_stream_moved_where_the_map_says_links_follow():
    the_map = _map()
    det = the_map.children["1.1"].children["instrument"].children["diode1"]
    det.children["value"] = det.children.pop("signal")
    merged = _merge(the_map)
    entry = merged.tree.children["1.1"]
    det = entry.children["instrument"].children["diode1"]
    assert det.children["value"].value == Stream(stream="c:diode1")
    assert h5maps.same(det.children["value"].attributes["units"], "V")
    assert det.children["signal"] == SoftLink(target_path="/1.1/instrument/diode1/value")
    assert entry.children["measurement"].children["diode1"] == SoftLink(target_path="/1.1/instrument/diode1/value")
    assert merged.conflicts == []
    assert h5maps.stream_items(merged.tree) == [("/1.1/instrument/diode1/value", "c:diode1")]


def test_stream_placed_twice_unknown_streams_and_kind_streams():
    the_map = _map(copy=Dataset(value=Stream(stream="c:diode1")), ghost=Dataset(value=Stream(stream="nobody")),
                   frames=Dataset(value=Stream(stream="c:lima")))
    merged = _merge(the_map)
    entry = merged.tree.children["1.1"]
    assert entry.children["copy"] == SoftLink(target_path="/1.1/instrument/diode1/signal")
    assert "ghost" not in entry.children
    assert "frames" not in entry.children  # the kind's node is made at the end
    assert merged.warnings == ["h5maps: /1.1/ghost: stream 'nobody' is not written by this writer: skipped"]
    final = _merge(the_map, final=True, ours=Group(children={"1.1": group("NXentry")}))
    assert final.tree.children["1.1"].children["frames"] == SoftLink(target_path="/1.1/instrument/lima/data")


def test_end_time_writer_note_and_foreign_entries():
    the_map = _map(end_time=Dataset(value="2026-01-01T00:00:00"),
                   writer=Group(children={"status": Dataset(value="SUCCEEDED")}))
    the_map.children["2.1"] = Group(attributes={"NX_class": "NXentry"})
    merged = _merge(the_map)
    entry = merged.tree.children["1.1"]
    assert "end_time" not in entry.children
    assert h5maps.same(entry.children["writer"].children["status"].value, "WRITING")
    assert list(merged.tree.children) == ["1.1"]
    assert merged.warnings == [
        "h5maps: entry 2.1 is not written here (not one of this scan's entries: 1.1)",
        "h5maps: /1.1/writer not written: the writer's note is the writer's",
    ]
    final = _merge(the_map, final=True)
    assert h5maps.same(final.tree.children["1.1"].children["end_time"].value, "2026-01-01T00:00:00")


def test_virtual_dataset_kept_only_with_its_sources():
    sel = SpaceSelection(start=[0], count=[4])

    def vds(src):
        return VirtualDataset(dtype="<f8", shape=[4], virtual_sources=[
            VirtualSource(vspace=sel, src_file=src, src_dataset="/data", src_space=sel)])

    the_map = _map(here=vds("there.h5"), gone=vds("missing.h5"), own=vds("."),
                   ext=ExternalLink(target_file="there.h5", target_path="/data"),
                   typed=Dataset(value=Inline(dtype="int16", value=[1, 2])))
    merged = _merge(the_map, exists=lambda name: name == "there.h5")
    entry = merged.tree.children["1.1"]
    assert sorted(k for k in entry.children if k in ("here", "gone", "own", "ext", "typed")) == \
        ["ext", "here", "own", "typed"]
    assert merged.warnings == ["h5maps: /1.1/gone: virtual dataset not written, source file(s) missing: missing.h5"]


def test_changed_lists_what_the_end_map_rewrites():
    start = _merge(_map(extra=Dataset(value="prepared"))).tree
    end = _map(extra=Dataset(value="ended"), more=Dataset(value=1))
    end.children["1.1"].children["instrument"].attributes["default"] = "diode1"
    end.children["1.1"].children["writer"] = Dataset(value="not over a group")
    assert h5maps.changed(start, end) == {"1.1/extra", "1.1/more", "1.1/instrument"}
