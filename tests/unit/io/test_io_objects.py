"""The low-level object creation (io/objects.py, io/arrays.py) makes what h5py's
high-level calls make: same HDF5 types, shapes, values, link encodings and order
tracking, so that readers cannot tell which path wrote a file."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
from nexus_writer_service.h5map import SpaceSelection as Sel
from nexus_writer_service.h5map import VirtualSource

from nexus_writer_service.io.arrays import ArraySpec, GrowingDataset
from nexus_writer_service.io.files import TRIM_CACHE_ABOVE, FileRegistry, trim_metadata_cache
from nexus_writer_service.h5map import Dataset, Group, SoftLink
from nexus_writer_service.io import entries
from nexus_writer_service.io.objects import (
    mark_target, new_attr, new_field, new_group, new_soft_link, new_virtual, replace_attr, root_of,
    selection_extent, text_attr,
)
from nexus_writer_service.io.tree import TreeWriter

VALUES = [
    "NXentry",
    "é unicode ✓",
    np.asarray(1.5),
    np.asarray(7),
    np.asarray(np.uint16(3)),
    np.asarray(True),
    np.arange(6, dtype=np.int32).reshape(2, 3),
    np.asarray([0.5, np.nan, np.inf]),
    np.asarray(["a", "bb", "ccc"], dtype=h5py.string_dtype()),
]


@pytest.fixture
def h5(tmp_path):
    with h5py.File(tmp_path / "objects.h5", "w", track_order=True) as f:
        yield f


def _same(a, b):
    assert a.id.get_type().equal(b.id.get_type()), (a.id.get_type().dtype, b.id.get_type().dtype)
    assert a.shape == b.shape
    assert type(a[()]) is type(b[()])
    np.testing.assert_array_equal(a[()], b[()])


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:20])
def test_field_as_h5py_makes_it(h5, value):
    kind = {"dtype": h5py.string_dtype()} if isinstance(value, str) else {}
    ref = h5.create_dataset("ref", data=value, **kind)
    ours = new_field(h5, "ours", value)
    _same(ours, ref)
    assert ours.chunks is None and ref.chunks is None
    assert ours.id.get_create_plist().get_obj_track_times() == ref.id.get_create_plist().get_obj_track_times()


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:20])
def test_attribute_as_h5py_makes_it(h5, value):
    h5.attrs["ref"] = value
    assert new_attr(h5, "ours", value)
    ref, ours = h5.attrs.get_id("ref"), h5.attrs.get_id("ours")
    assert ours.get_type().equal(ref.get_type())
    assert ours.shape == ref.shape
    got, want = h5.attrs["ours"], h5.attrs["ref"]
    assert type(got) is type(want)
    np.testing.assert_array_equal(got, want)


def test_values_left_to_h5py(h5):
    # empty arrays and types other than numbers and strings: the caller uses h5py
    for value in (np.zeros(0), np.asarray([1 + 2j]), object(), b"bytes"):
        assert new_field(h5, "x", value) is None
        assert not new_attr(h5, "x", value)
    assert "x" not in h5 and "x" not in h5.attrs
    assert not new_attr(h5, "é", "non-ASCII attribute names go through h5py")
    assert new_field(h5, "x", np.asarray(["a"], dtype=h5py.string_dtype("ascii"))) is None
    # a value HDF5 cannot store leaves no empty attribute behind
    with pytest.raises(UnicodeEncodeError):
        new_attr(h5, "bad", "lone surrogate \udc80")
    assert "bad" not in h5.attrs


def test_groups_and_links_as_h5py_makes_them(h5):
    ref = h5.create_group("réf", track_order=True)
    ours = new_group(h5, "ours_é")
    for grp in (ref, ours):
        for name in ("b", "a", "c"):
            grp.create_group(name)
        grp.attrs["z"], grp.attrs["y"] = 1, 2
    assert list(ours) == list(ref) == ["b", "a", "c"]  # creation order kept
    # no time stamps, whatever the h5py (files written twice are the same): h5py >= 3.14 makes
    # groups so, 3.13 (BLISS 2.2's) stamps them, which takes header space
    assert ours.id.get_create_plist().get_obj_track_times() == 0
    if ref.id.get_create_plist().get_obj_track_times() == 0:
        assert h5py.h5o.get_info(ours.id).hdr.space.total == h5py.h5o.get_info(ref.id).hdr.space.total
    assert list(ours.attrs) == list(ref.attrs) == ["z", "y"]
    assert h5.id.links.get_info("ours_é".encode()).cset == h5.id.links.get_info("réf".encode()).cset
    with pytest.raises(ValueError):
        new_group(h5, "ours_é")  # never over an existing name

    new_soft_link(ours, "to_a", "/réf/a")
    h5["réf"]["to_a"] = h5py.SoftLink("/réf/a")
    assert ours.get("to_a", getlink=True).path == "/réf/a"
    assert ours["to_a"] == h5["réf/a"]


def test_mark_target(h5):
    h5.create_group("a/b")
    assert mark_target(h5, "/a/b")
    assert h5["a/b"].attrs["target"] == "/a/b"
    h5["a/b"].attrs["target"] = "/kept"
    assert mark_target(h5, "/a/b") and h5["a/b"].attrs["target"] == "/kept"
    assert not mark_target(h5, "/a/missing") and not mark_target(h5, "/nowhere/x")


def test_text_attributes_read_and_replaced_as_h5py(h5):
    h5.attrs["vlen"] = "é vlen"
    h5.attrs.create("fixed", np.bytes_(b"fixed"))  # another writer's fixed-length string
    h5.attrs["number"], h5.attrs["array"] = 3, ["a", "b"]
    grp = h5.create_group("g/h")
    root = root_of(grp)
    assert root == h5["/"]
    assert [text_attr(root.id, n) for n in ("vlen", "fixed", "number", "array", "missing")] == [
        "é vlen", "fixed", None, None, None]
    replace_attr(root, "vlen", "new ✓")  # text over text: written in place
    replace_attr(root, "other", 2.5)
    replace_attr(root, "fixed", "now variable")  # another type: made again, last
    replace_attr(root, "number", np.asarray([1, 2]))
    assert h5.attrs["vlen"] == "new ✓" and h5.attrs["other"] == 2.5 and h5.attrs["fixed"] == "now variable"
    np.testing.assert_array_equal(h5.attrs["number"], [1, 2])
    assert list(h5.attrs) == ["vlen", "array", "other", "fixed", "number"]
    assert h5py.check_string_dtype(h5.attrs.get_id("fixed").dtype).length is None


def test_entries_are_built_aside_and_a_killed_writers_leftover_is_replaced(h5):
    h5.create_group(f"{entries.STAGING}3_1").create_group("half")  # a writer killed while building 3.1
    h5.create_group(f"{entries.STAGING}4_1")  # another entry's: not this one's to remove
    seen = []

    def write(parent, name):
        seen.append(sorted(parent))
        parent.create_group(name).create_dataset("title", data="scan 3")

    entries.create(h5, "3.1", write)
    assert seen == [[f"{entries.STAGING}4_1"]]  # the leftover went before the entry was built
    assert sorted(h5) == ["3.1", f"{entries.STAGING}4_1"]
    assert list(h5["3.1"]) == ["title"]


def test_link_destinations_are_marked_with_their_final_path_as_they_are_made(h5):
    tree = Group(attributes={"NX_class": "NXentry"}, children={
        "instrument": Group(attributes={"NX_class": "NXinstrument"}, children={
            "diode": Group(attributes={"NX_class": "NXdetector"}, children={"data": Dataset(value=1.5)})}),
        "measurement": Group(attributes={"NX_class": "NXcollection"}, children={
            "diode": SoftLink(target_path="/2.1/instrument/diode/data"),
            "det": SoftLink(target_path="/2.1/instrument/diode"),
            "older": SoftLink(target_path="/1.1/title")}),
    })
    h5.create_group("1.1").create_dataset("title", data="first")
    writer = TreeWriter()
    entries.create(h5, "2.1", lambda parent, name: writer.write(parent, name, tree, as_name="2.1"))
    writer.finish_links()
    assert h5["2.1/instrument/diode/data"].attrs["target"] == "/2.1/instrument/diode/data"
    assert h5["2.1/instrument/diode"].attrs["target"] == "/2.1/instrument/diode"
    assert h5["1.1/title"].attrs["target"] == "/1.1/title"  # outside the tree: marked afterwards
    assert h5["2.1/measurement/diode"][()] == 1.5 and h5["2.1/measurement/older"][()] == b"first"
    assert h5["2.1/measurement/det"] == h5["2.1/instrument/diode"]
    assert "target" not in h5["2.1/instrument"].attrs and writer.warnings == []


@pytest.mark.parametrize("dtype,point,fill", [
    ("float64", (), np.nan), ("int32", (), -1), ("bool", (), False), ("uint16", (3, 2), 0),
    ("float32", (-1,), np.nan),  # ragged spectra: padded with the fill value
])
def test_growing_plain_dataset_as_h5py_makes_it(h5, dtype, point, fill):
    spec = ArraySpec(dtype, point, fill, None, 10)
    array = GrowingDataset.create(h5, "ours", spec)
    shape = tuple(0 if d == -1 else d for d in point)
    ref = h5.create_dataset("ref", shape=(0,) + shape, maxshape=(None,) + tuple(None if d == -1 else d for d in point),
                            dtype=dtype, chunks=array.dset.chunks, fillvalue=fill)
    assert array.dset.id.get_type().equal(ref.id.get_type())
    assert array.dset.maxshape == ref.maxshape
    assert np.array_equal(array.dset.fillvalue, ref.fillvalue, equal_nan=dtype.startswith("float"))
    rng = np.random.default_rng(1)
    pts = []
    for n in (1, 4, 2):
        if -1 in point:
            batch = [rng.random(rng.integers(1, 5)).astype(dtype) for _ in range(n)]
            pts.extend(batch)
        else:
            batch = (rng.random((n,) + shape) * 10).astype(np.float64)  # converted to the dataset's type
            pts.extend(batch.astype(dtype))
        assert array.append(batch) == n
    assert array.length == len(pts) == array.dset.shape[0] == 7
    got = array.dset[()]
    for i, p in enumerate(pts):
        p = np.asarray(p)
        np.testing.assert_array_equal(got[(i,) + tuple(slice(0, d) for d in p.shape)], p)
        if -1 in point:
            assert np.isnan(got[i, p.shape[0]:]).all()


def test_a_flush_keeps_the_metadata_cache_small_without_writing_outside_it(tmp_path):
    path = tmp_path / "kept_open.h5"
    files = FileRegistry()
    handle = files.acquire(str(path))
    with handle.lock:
        for e in range(120):  # back-to-back scans in one file kept open
            grp = new_group(handle.h5, f"{e}.1")
            for i in range(40):
                new_attr(new_field(grp, f"d{i}", np.asarray(float(e * 100 + i))), "units", "mm")
    entries = handle.h5.id.get_mdc_size()[3]
    assert entries > TRIM_CACHE_ABOVE  # evictions are off (crash safety): everything stays cached
    handle.flush()
    assert handle.h5.id.get_mdc_size()[3] < TRIM_CACHE_ABOVE / 2
    # trimming drops clean entries only: the file on disk does not change
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    trim_metadata_cache(handle.h5)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not handle.h5.id.get_mdc_config().evictions_enabled
    files.release(handle)
    with h5py.File(path, "r") as f:
        assert len(f) == 120
        assert f["119.1/d39"][()] == 119 * 100 + 39 and f["0.1/d0"].attrs["units"] == "mm"


def test_virtual_dataset_as_h5py_makes_it(tmp_path):
    src = tmp_path / "frames.h5"
    frames = np.arange(6 * 2 * 3, dtype=np.uint16).reshape(6, 2, 3)
    with h5py.File(src, "w") as f:
        f["entry/data"] = frames
    # frames 1..4 of the file (one source) into a (2, 2) mesh of frames, line by line
    pieces = [(Sel(start=[0, 0, 0, 0], count=[1, 2, 2, 3]), Sel(start=[1, 0, 0], count=[2, 2, 3])),
              (Sel(start=[1, 0, 0, 0], count=[1, 2, 2, 3]), Sel(start=[3, 0, 0], count=[2, 2, 3]))]
    strided = (Sel(start=[0, 0, 0], count=[3, 2, 3]), Sel(start=[0, 0, 0], count=[3, 2, 3], stride=[2, 1, 1]))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        mesh = new_virtual(f, "mesh", np.dtype("uint16"), (2, 2, 2, 3),
                           [VirtualSource(vspace=v, src_file="frames.h5", src_dataset="entry/data", src_space=s)
                            for v, s in pieces], [(6, 2, 3)] * 2, 0)
        even = new_virtual(f, "even", np.dtype("uint16"), (3, 2, 3),
                           [VirtualSource(vspace=strided[0], src_file="frames.h5", src_dataset="entry/data",
                                          src_space=strided[1])], [(6, 2, 3)], 0)
        layout = h5py.VirtualLayout((3, 2, 3), "uint16")
        layout[0:3] = h5py.VirtualSource("frames.h5", "entry/data", shape=(6, 2, 3))[0:6:2]
        ref = f.create_virtual_dataset("ref", layout, fillvalue=0)
        assert mesh.is_virtual and even.is_virtual
        np.testing.assert_array_equal(mesh[()], frames[1:5].reshape(2, 2, 2, 3))
        np.testing.assert_array_equal(even[()], frames[0:6:2])
        np.testing.assert_array_equal(even[()], ref[()])
        assert even.id.get_type().equal(ref.id.get_type()) and even.fillvalue == ref.fillvalue
        assert [(m.file_name, m.dset_name) for m in even.virtual_sources()] == \
            [(m.file_name, m.dset_name) for m in ref.virtual_sources()]
    assert selection_extent(strided[1]) == (5, 2, 3)
    assert selection_extent(Sel(start=[2], count=[3], stride=[4], block=[2])) == (12,)


@pytest.mark.parametrize("bounded", [True, False])
def test_growing_datasets_of_thousands_of_channels_keep_the_metadata_cache_bounded(tmp_path, monkeypatch,
                                                                                  bounded):
    """3000 channels created and appended to, with no periodic flush between (one start
    tree, one large read): the cache stays near ``BOUND_CACHE_ABOVE`` entries (~3 kB of
    memory each) where it held every object before (~9,200 here), datasets beyond the
    open slots are closed between appends, and every point is in the file."""
    from nexus_writer_service.io import arrays, files as io_files

    if not bounded:  # as before: nothing flushed, every dataset kept open
        monkeypatch.setattr(io_files, "BOUND_CACHE_ABOVE", 10**9)
        monkeypatch.setattr(arrays.OPEN_SLOTS, "limit", 10**9)
    registry = FileRegistry()
    handle = registry.acquire(str(tmp_path / "many.h5"))
    spec = ArraySpec("float64", (), 0, None, expected_points=40)
    most = 0
    with handle.lock:
        grp = new_group(handle.h5, "1.1")
        made = [GrowingDataset.create(new_group(grp, f"c{i}"), "data", spec) for i in range(3000)]
        for a in made:
            a.park()
        for k in range(2):
            for i, a in enumerate(made):
                a.append(np.arange(20.0) + 1000 * i + 20 * k)
                most = max(most, handle.h5.id.get_mdc_size()[3])
        still_open = sum(a.is_open for a in made)
    if bounded:
        assert most <= io_files.BOUND_CACHE_ABOVE + 4 * arrays.CACHE_CHECK_EVERY, most
        assert still_open <= arrays.OPEN_SLOTS.limit
    else:
        assert most > 2 * TRIM_CACHE_ABOVE and still_open == 3000
    del made
    registry.release(handle)
    with h5py.File(tmp_path / "many.h5", "r") as f:
        for i in (0, 1234, 2999):
            assert np.array_equal(f[f"1.1/c{i}/data"][()], np.arange(40.0) + 1000 * i)
