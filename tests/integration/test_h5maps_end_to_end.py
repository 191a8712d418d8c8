"""BLISS 2.4's ``scan_info["h5maps"]`` through real Redis: every item of the map in the file,
exactly, our layout beside it, a conflict resolved toward the map with one warning.

The maps are made from ESRF's reference layout of each recorded scan (``h5map_reference``),
plus one item of each h5map type and a deliberate conflict; they reach the writer as JSON in
scan_info (PREPARED and CLOSED), as BLISS 2.4 sends them."""

from __future__ import annotations

import posixpath

import h5py
import numpy as np
import pytest

from conftest import read_file
from h5map_reference import dataset, entry_map, group, put, reference_layout
from nexus_writer_service.h5map import (
    ExternalBinaryDataset, ExternalLink, Group, HDF5Item, SoftLink, Stream, VirtualDataset,
)
from nexus_writer_service.simulation.recording import fixture_names
from test_fixtures_end_to_end import check_default_plot

#: where ESRF's layout (the map) and ours differ for these scans, beside the test's own conflict:
#: NeXus's classes where ESRF's writer uses others (doc/layout.md)
CONFLICTS: dict[str, list[str]] = {
    "19_ascan_usermeta": ["/37.1/instrument/slits@NX_class: 'NXslit' (ours: 'NXcollection')",
                          "/37.1/notes@NX_class: 'NXcollection' (ours: 'NXnote')"],
}


def _short(text: str) -> str:
    """As the warning cuts values (a warning is no place for essays)."""
    return text if len(text) <= 60 else text[:57] + "..."

DIODE = "simulation_diode_sampling_controller:diode{}"

FIXTURES = [n for n in fixture_names() if reference_layout(n)[1] is not None and "sequence" not in n]


def _extras(tmp, entry: str, final: bool) -> dict:
    """One item of each type, relative to the entry (and one that changes at the end)."""
    source = tmp / "source.h5"
    if not source.exists():
        with h5py.File(source, "w") as f:
            f["data"] = np.arange(4.0)
        (tmp / "raw.bin").write_bytes(np.arange(3, dtype="<i4").tobytes())
    sel = {"start": [0], "count": [4]}

    def vds(src):
        return {"type": "virtual_dataset", "dtype": "<f8", "shape": [4], "attributes": {"interpretation": "spectrum"},
                "virtual_sources": [{"vspace": sel, "src_file": src, "src_dataset": "/data", "src_space": sel}]}

    return {
        "extras/": group(NX_class="NXcollection", origin="h5maps test" if final else "h5maps test (prepared)"),
        "extras/typed": dataset({"type": "inline", "dtype": "int16", "value": [1, 2, 3]}, units="mm"),
        "extras/b64": dataset({"type": "inline_b64", "dtype": "<f4", "shape": [2], "value": "AACAPwAAAEA="}),
        "extras/text": dataset(["a", "b"]),
        "extras/changing": dataset("ended" if final else "prepared"),
        "extras/relative": {"type": "soft_link", "target_path": "typed"},
        "extras/absolute": {"type": "soft_link", "target_path": f"/{entry}/title"},
        "extras/external": {"type": "external_link", "target_file": str(source), "target_path": "/data"},
        "extras/binary": {"type": "external_binary_dataset", "dtype": "<i4", "shape": [3],
                          "files": [{"name": str(tmp / "raw.bin"), "offset": 0, "size": 12}]},
        "extras/virtual": vds(str(source)),
        "extras/virtual_missing": vds(str(tmp / "missing.h5")),
    }


def _map(rec, fixture, tmp, final: bool) -> dict:
    entry = f"{rec.number}.1"
    root = entry_map(rec, fixture, final)
    for rel, node in _extras(tmp, entry, final).items():
        put(root["children"][entry], rel, node)
    # the end map changes what the start's said: a group's attribute (above), a dataset
    # (extras/changing) and the attributes of the stream datasets (their data stay)
    _mark_streams(root, "end" if final else "prepared")
    # the deliberate conflict: the map's title differs from scan_info's
    put(root["children"][entry], "title", dataset(f"map: {rec.info_final['title']}"))
    return {rec.identity["path"]: root, str(tmp / "elsewhere.h5"): group()}


def _mark_streams(node: dict, phase: str) -> None:
    for child in node.get("children", {}).values():
        if not isinstance(child, dict):  # a dataset given by its value alone
            continue
        if child["type"] == "group":
            _mark_streams(child, phase)
        elif child["type"] == "dataset" and isinstance(child["value"], dict) and child["value"].get("type") == "stream":
            child["attributes"]["phase"] = phase


def _decoded(item):
    value = item.decode() if hasattr(item, "decode") and not isinstance(item, (str, bytes)) else item
    if hasattr(item, "root"):
        value = item.root
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel()]
    return value


def _same(h5_value, item) -> bool:
    mine, theirs = _decoded(h5_value), _decoded(item)
    if isinstance(theirs, list):
        return mine == theirs
    return mine.dtype == theirs.dtype and np.array_equal(mine, theirs)


def _check_attrs(obj, node, where):
    for k, v in node.attributes.items():
        assert _same(obj.attrs[k], v), f"{where}@{k}: {obj.attrs[k]!r} != {v!r}"


def check_map_in_file(f: h5py.File, node: Group, rec, path: str = "", placed: set | None = None) -> int:
    """Every item of ``node`` at its path in ``f``, exactly; returns how many were checked."""
    placed = set() if placed is None else placed
    count = 0
    for name, child in node.children.items():
        where = f"{path}/{name}"
        link = f.get(where, getlink=True)
        if isinstance(child, Group):
            assert isinstance(link, h5py.HardLink) and isinstance(f[where], h5py.Group), where
            _check_attrs(f[where], child, where)
            count += 1 + check_map_in_file(f, child, rec, where, placed)
        elif isinstance(child, SoftLink):
            assert isinstance(link, h5py.SoftLink) and link.path == child.target_path, where
            target = child.target_path if child.target_path.startswith("/") else \
                posixpath.join(posixpath.dirname(where), child.target_path)
            assert target in f, where
            count += 1
        elif isinstance(child, ExternalLink):
            assert isinstance(link, h5py.ExternalLink), where
            assert (link.filename, link.path) == (child.target_file, child.target_path), where
            count += 1
        elif isinstance(child, ExternalBinaryDataset):
            dset = f[where]
            assert dset.external == [(fe.name, fe.offset, fe.size) for fe in child.files], where
            assert dset[()].tolist() == [0, 1, 2], where
            count += 1
        elif isinstance(child, VirtualDataset):
            dset = f[where]
            assert dset.is_virtual, where
            assert dset[()].tolist() == [0.0, 1.0, 2.0, 3.0], where
            _check_attrs(dset, child, where)
            count += 1
        elif isinstance(child.value, Stream):
            stream = child.value.stream
            assert stream not in placed, f"{where}: {stream} placed twice by the map"
            placed.add(stream)
            assert isinstance(link, h5py.HardLink), where
            data = np.asarray(rec.stream(stream).data)
            assert f[where].shape == data.shape and np.array_equal(f[where][()], data, equal_nan=True), where
            _check_attrs(f[where], child, where)
            count += 1
        else:
            assert isinstance(link, h5py.HardLink), where
            assert _same(f[where][()], child.value), f"{where}: {f[where][()]!r} != {child.value!r}"
            _check_attrs(f[where], child, where)
            count += 1
    return count


@pytest.mark.parametrize("fixture", FIXTURES)
def test_h5maps_written_ours_beside(harness, tmp_path, fixture):
    rec = harness.recording(fixture)
    entry = f"{rec.number}.1"
    rec.info_prepared["h5maps"] = _map(rec, fixture, tmp_path, final=False)
    rec.info_final["h5maps"] = _map(rec, fixture, tmp_path, final=True)
    key = harness.publish(rec)
    state = harness.state(key)
    assert state.status == "SUCCEEDED", state
    final = HDF5Item.validate_python(rec.info_final["h5maps"][rec.identity["path"]])
    # what the writer could not write of the map, and the conflict, said once each
    missing = str(tmp_path / "missing.h5")
    h5map_warnings = [w for w in state.warnings if w.startswith("h5maps:")]
    assert h5map_warnings[0] == (f"h5maps: /{entry}/extras/virtual_missing: virtual dataset not written,"
                                 f" source file(s) missing: {missing}")
    assert len(h5map_warnings) == 2  # the conflicts: one warning
    head, listed = h5map_warnings[1].split(", the map's written: ", 1)
    title = rec.info_final["title"]
    assert listed.split("; ") == [
        f"/{entry}/title: dataset {_short('map: ' + title)!r} (ours: dataset {_short(title)!r})",
        *CONFLICTS.get(fixture, [])]
    assert head == f"h5maps: {len(listed.split('; '))} item(s) of BLISS's map differ from the writer's layout"
    del final.children[entry].children["extras"].children["virtual_missing"]
    with read_file(state.file) as f:
        assert check_map_in_file(f, final, rec) == _count(final)
        e = f[entry]
        assert e["extras/changing"][()].decode() == "ended"  # the end map's
        assert "virtual_missing" not in e["extras"]
        # ours beside: the writer note, the plot, the points
        assert e["writer/status"][()].decode() == "SUCCEEDED"
        assert e["writer"].attrs["NX_class"] == "NXnote"
        check_default_plot(f, entry, rec)
        # the warnings in the file's note too
        assert [w.decode() for w in e["writer/warnings"][()] if w.startswith(b"h5maps:")] == h5map_warnings
        for stream in rec.streams:
            if stream.is_numeric:
                assert sum(int(p[()]) for p in e["writer/points"].values()
                           if p.attrs["stream"] == stream.name) == len(stream.data)


def _count(node: Group) -> int:
    return sum(1 + (_count(c) if isinstance(c, Group) else 0) for c in node.children.values())


def test_broken_map_leaves_our_layout(harness):
    rec = harness.recording("03_ascan")
    rec.info_prepared["h5maps"] = {rec.identity["path"]: {"type": "group", "children": {"x": {"type": "soft_link"}}}}
    key = harness.publish(rec)
    state = harness.state(key)
    assert state.status == "SUCCEEDED", state
    broken = [w for w in state.warnings if "h5maps" in w]
    assert len(broken) == 1
    assert broken[0].startswith(f"scan_info['h5maps'][{rec.identity['path']!r}] is not a valid h5map (")
    with read_file(state.file) as f:
        assert "x" not in f[f"{rec.number}.1"]
        assert f[f"{rec.number}.1/writer/status"][()].decode() == "SUCCEEDED"


def test_streams_where_the_map_places_them(harness):
    """A stream the map puts elsewhere than we would: our dataset goes there, our old path
    links to it, our links follow; a stream placed twice: one dataset and a link."""
    rec = harness.recording("03_ascan")
    entry = f"{rec.number}.1"
    the_map = group()
    diode1 = dataset({"type": "stream", "stream": DIODE.format(1)}, units="V")
    put(the_map, f"{entry}/", group(NX_class="NXentry"))
    put(the_map, f"{entry}/instrument/diode1/counts", diode1)
    put(the_map, f"{entry}/again/diode2", dataset({"type": "stream", "stream": DIODE.format(2)}))
    put(the_map, f"{entry}/again/diode2_copy", dataset({"type": "stream", "stream": DIODE.format(2)}))
    rec.info_prepared["h5maps"] = rec.info_final["h5maps"] = {rec.identity["path"]: the_map}
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    assert [w for w in state.warnings if "h5maps" in w] == []
    counts = f"/{entry}/instrument/diode1/counts"
    with read_file(state.file) as f:
        e = f[entry]
        assert isinstance(e.get("instrument/diode1/counts", getlink=True), h5py.HardLink)
        np.testing.assert_array_equal(f[counts][()], rec.stream(DIODE.format(1)).data)
        assert f[counts].attrs["units"] == "V"
        assert f[counts].attrs["target"] == counts
        for path in ("instrument/diode1/signal", "instrument/diode1/data", "measurement/diode1"):
            link = e.get(path, getlink=True)
            assert isinstance(link, h5py.SoftLink) and link.path == counts, path
        again = f"/{entry}/again/diode2"
        assert isinstance(e.get("again/diode2", getlink=True), h5py.HardLink)
        np.testing.assert_array_equal(f[again][()], rec.stream(DIODE.format(2)).data)
        assert e.get("again/diode2_copy", getlink=True).path == again
        assert int(e["writer/points/diode1"][()]) == len(rec.stream(DIODE.format(1)).data)
        check_default_plot(f, entry, rec)
