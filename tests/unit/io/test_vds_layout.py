"""Virtual dataset mappings read from the file's bytes (``io.vds_layout``) and through
``io.inspect``, checked against HDF5 itself: its own decoding (``virtual_sources()``)
and the data it reads (``dset[()]``), element by element.

The oracle never uses this package's code: for every mapping we answer, the source
frames read with h5py from the source file are the virtual frames HDF5 reads, every
point HDF5 maps is in one of our mappings (the rest read as the fill value), and the
names are HDF5's. Mappings that take part of a frame, and damaged bytes, are not
answered (None); the facts ``io.inspect`` then gives still rebuild HDF5's frames.
No Redis: this is the io layer, on files made in each test.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from nexus_writer_service.descriptions import FileQuery
from nexus_writer_service.io import inspect, vds_layout
from nexus_writer_service.simulation.lima2 import Lima2Detector, _params, write_master_file, write_receiver_files
from nexus_writer_service.vds_mapping import VdsMapping

LIBVERS = ["earliest", "latest"]


def _src_path(master: str, file_name: str) -> str:
    if file_name == ".":
        return master
    return file_name if os.path.isabs(file_name) else os.path.join(os.path.dirname(master), file_name)


def _point(master: str, file_name: str, dataset: str):
    try:
        with h5py.File(_src_path(master, file_name), "r", locking=False) as g:
            return tuple(g[dataset].shape[1:])
    except (OSError, KeyError):
        return None


def _read_here(path: str, name: str):
    with h5py.File(path, "r", locking=False) as f:
        return vds_layout.read_virtual_layout(f, name, lambda fn, dn: _point(path, fn, dn))


def _assert_as_hdf5_reads(path: str, name: str, shape: tuple, mappings: list[VdsMapping]) -> None:
    """Our mappings rebuild exactly what HDF5 reads of the dataset, and name HDF5's sources."""
    with h5py.File(path, "r") as f:
        d = f[name]
        truth, fill = d[()], d.fillvalue
        decoded = d.virtual_sources()
        assert tuple(d.shape) == tuple(shape)
        npoints = sum(vs.vspace.get_select_npoints() for vs in decoded)
    frame = int(np.prod(shape[1:]))
    ours = np.full(truth.shape, fill, dtype=truth.dtype)
    for m in mappings:
        with h5py.File(_src_path(path, m.src_file), "r") as g:
            src = g[m.src_dataset][()]
        ours[m.frames] = src[m.src_frames].reshape((len(m),) + tuple(shape[1:]))
    np.testing.assert_array_equal(ours, truth)
    assert [(m.src_file, m.src_dataset) for m in mappings] == [(vs.file_name, vs.dset_name) for vs in decoded]
    assert sum(len(m) for m in mappings) * frame == npoints
    assert sum(len(m) for m in mappings) == len(np.unique(np.concatenate([m.frames for m in mappings])))


def _sources(folder: str, specs: dict) -> None:
    """Source files, each frame distinct: value = 1000 * file number + flat position."""
    for k, (name, (dataset, shape)) in enumerate(specs.items()):
        with h5py.File(os.path.join(folder, name), "w") as g:
            g.create_dataset(dataset, data=(1000 * (k + 1) + np.arange(int(np.prod(shape)))).reshape(shape))


def _whole_frame_layouts(folder: str, libver: str, userblock: int = 0) -> tuple[str, list[str]]:
    """Virtual datasets of every whole-frame kind h5py makes, in one file."""
    path = os.path.join(folder, "v.h5")
    _sources(folder, {"other.h5": ("data", (25, 2, 3)), "x.h5": ("d", (10, 4)), "y.h5": ("d", (10, 4)),
                      **{f"r_{k}.h5": ("data", (5, 4)) for k in range(8)}})
    owner = np.random.default_rng(7).integers(0, 3, size=60)
    _sources(folder, {f"p_{k}_00000.h5": ("e/i/d/data", (int((owner == k).sum()), 1, 2, 3)) for k in range(3)})
    kwargs = {"userblock_size": userblock} if userblock else {}
    with h5py.File(path, "w", libver=libver, **kwargs) as f:
        f.create_dataset("src", data=np.arange(100 * 6).reshape(100, 2, 3))
        strided = h5py.VirtualLayout((50, 2, 3), "i8")
        strided[0:50:2] = h5py.VirtualSource(".", "src", shape=(100, 2, 3))[10:60:2]  # regular, same file
        strided[1:50:2] = h5py.VirtualSource("other.h5", "data", shape=(25, 2, 3))
        f.create_virtual_dataset("strided", strided, fillvalue=-1)
        for i in range(60):  # enough attributes for the header to continue in another block
            f["strided"].attrs[f"a{i}"] = np.arange(20)
        dealt = h5py.VirtualLayout((40, 4), "i8")
        for k in range(8):  # frames dealt over 8 files
            dealt[np.arange(k, 40, 8)] = h5py.VirtualSource(f"r_{k}.h5", "data", shape=(5, 4))
        f.create_virtual_dataset("group/dealt", dealt)
        irregular = h5py.VirtualLayout((20, 4), "i8")
        irregular[[0, 1, 2, 7, 8, 15]] = h5py.VirtualSource("x.h5", "d", shape=(10, 4))[[1, 2, 3, 4, 8, 9]]
        f.create_virtual_dataset("irregular", irregular, fillvalue=-7)
        randomly = h5py.VirtualLayout((60, 1, 2, 3), "i8")  # as a conductor deals frames: any order
        for k in range(3):
            frames = np.flatnonzero(owner == k)
            randomly[frames] = h5py.VirtualSource(f"p_{k}_00000.h5", "e/i/d/data", shape=(len(frames), 1, 2, 3))
        f.create_virtual_dataset("randomly", randomly)
        squeezed = h5py.VirtualLayout((60, 2, 3), "i8")  # (n, 1, H, W) sources in an (n, H, W) layout
        for k in range(3):
            frames = np.flatnonzero(owner == k)
            squeezed[frames] = h5py.VirtualSource(f"p_{k}_00000.h5", "e/i/d/data", shape=(len(frames), 1, 2, 3))
        f.create_virtual_dataset("squeezed", squeezed)
        whole = h5py.VirtualLayout((10, 4), "i8")
        whole[:] = h5py.VirtualSource("y.h5", "d", shape=(10, 4))
        f.create_virtual_dataset("whole", whole)
        f["plain"] = np.zeros(3)
    return path, ["strided", "group/dealt", "irregular", "randomly", "squeezed", "whole"]


@pytest.mark.parametrize("libver, userblock", [("earliest", 0), ("latest", 0), ("earliest", 1024)])
def test_whole_frame_mappings_rebuild_what_hdf5_reads(tmp_path, libver, userblock):
    path, names = _whole_frame_layouts(str(tmp_path), libver, userblock)
    for name in names:
        layout = _read_here(path, name)
        assert layout is not None, name
        _assert_as_hdf5_reads(path, name, layout.shape, layout.mappings)


def test_the_mappings_are_exactly_these(tmp_path):
    """One case spelled out (the oracle above could share a blind spot with a rebuild)."""
    path, _ = _whole_frame_layouts(str(tmp_path), "earliest")
    assert _read_here(path, "irregular").mappings == [
        VdsMapping([0, 1, 2, 7, 8, 15], "x.h5", "d", [1, 2, 3, 4, 8, 9], (10, 4), (4,))]
    assert _read_here(path, "strided").mappings == [
        VdsMapping(np.arange(0, 50, 2), ".", "src", np.arange(10, 60, 2), (59, 2, 3), (2, 3)),
        VdsMapping(np.arange(1, 50, 2), "other.h5", "data", np.arange(25), (25, 2, 3), (2, 3))]


@pytest.mark.parametrize("libver", LIBVERS)
@pytest.mark.parametrize("ordering", ["identity", "permuted", "dynamic"])
def test_a_lima2_master_of_any_ordering_reads_as_hdf5_reads_it(tmp_path, libver, ordering):
    det = Lima2Detector(receivers=3, frames_per_file=2, ordering=ordering, compression="none")
    folder = str(tmp_path / "scan0001")
    write_receiver_files(det, 17, folder)
    master = write_master_file(det, 17, folder, _params(det, folder, 17))
    layout = _read_here(master, det.data_path)
    assert layout is not None and layout.shape == (17, 8, 10)
    _assert_as_hdf5_reads(master, det.data_path, layout.shape, layout.mappings)
    assert sorted(np.concatenate([m.frames for m in layout.mappings]).tolist()) == list(range(17))


def test_inspect_gives_the_same_facts_with_or_without_the_reader(tmp_path, monkeypatch):
    """``io.inspect`` answers a virtual dataset from the bytes; with the reader off it
    asks HDF5: the facts a kind gets are the same."""
    det = Lima2Detector(receivers=3, frames_per_file=2, ordering="dynamic")
    folder = str(tmp_path / "scan0001")
    write_receiver_files(det, 13, folder)
    master = write_master_file(det, 13, folder, _params(det, folder, 13))
    q = FileQuery(path=master, dataset=det.data_path)

    def facts():
        (got,) = inspect.answer([q])[q]
        return got.exists, got.shape, got.dtype, got.sources

    fast = facts()
    monkeypatch.setattr(inspect, "read_virtual_layout", lambda f, name, points: None)
    slow = facts()
    assert slow == fast
    assert fast[:3] == (True, (13, 8, 10), "<u2")
    assert sum(len(m) for m in fast[3]) == 13
    _assert_as_hdf5_reads(master, det.data_path, fast[1], fast[3])


def _half_frames(folder: str, libver: str) -> str:
    """Two mappings, each half of every frame (left and right columns)."""
    _sources(folder, {"left.h5": ("d", (10, 2)), "right.h5": ("d", (10, 2))})
    path = os.path.join(folder, "half.h5")
    with h5py.File(path, "w", libver=libver) as f:
        layout = h5py.VirtualLayout((10, 4), "i8")
        layout[:, 0:2] = h5py.VirtualSource("left.h5", "d", shape=(10, 2))
        layout[:, 2:4] = h5py.VirtualSource("right.h5", "d", shape=(10, 2))
        f.create_virtual_dataset("half", layout, fillvalue=-1)
        irregular = h5py.VirtualLayout((10, 4), "i8")  # index arrays, part of each frame
        irregular[[0, 3, 4, 9], 1:3] = h5py.VirtualSource("left.h5", "d", shape=(10, 2))[[1, 2, 5, 6], :]
        f.create_virtual_dataset("irregular_half", irregular, fillvalue=-1)
        source_part = h5py.VirtualLayout((5, 2), "i8")  # every other source frame, whole
        source_part[:, :] = h5py.VirtualSource("right.h5", "d", shape=(10, 2))[0:10:2, :]
        f.create_virtual_dataset("every_other", source_part)
        column = h5py.VirtualLayout((10, 1), "i8")  # one column of each source frame
        column[:, :] = h5py.VirtualSource("left.h5", "d", shape=(10, 2))[:, 1:2]
        f.create_virtual_dataset("column", column, fillvalue=-1)
    return path


@pytest.mark.parametrize("libver", LIBVERS)
def test_mappings_over_parts_of_frames_are_not_answered(tmp_path, libver):
    """Two half-frame mappings once read as whole frames 0-9: now no answer, and the
    facts ``io.inspect`` gives (the dataset itself as the one source) read as HDF5 reads."""
    path = _half_frames(str(tmp_path), libver)
    assert _read_here(path, "half") is None
    assert _read_here(path, "irregular_half") is None
    assert _read_here(path, "column") is None  # whole virtual frames, parts of source frames
    every_other = _read_here(path, "every_other")  # whole frames on both sides: answered
    assert every_other.mappings == [VdsMapping(range(5), "right.h5", "d", range(0, 10, 2), (9, 2), (2,))]
    _assert_as_hdf5_reads(path, "every_other", every_other.shape, every_other.mappings)
    for name in ("half", "irregular_half", "column"):
        q = FileQuery(path=path, dataset=name)
        (facts,) = inspect.answer([q])[q]
        n, width = facts.shape
        assert facts.sources == [VdsMapping(range(n), os.path.abspath(path), f"/{name}", range(n), (n, width),
                                            (width,))], name
        with h5py.File(path, "r") as f:  # a virtual dataset over those facts: HDF5's frames
            truth = f[name][()]
        rebuilt = str(tmp_path / f"ours_{name}.h5")
        with h5py.File(rebuilt, "w") as g:
            layout = h5py.VirtualLayout(facts.shape, "i8")
            for m in facts.sources:
                layout[m.frames[0]:m.frames[-1] + 1] = h5py.VirtualSource(m.src_file, m.src_dataset, shape=m.src_shape)
            g.create_virtual_dataset("data", layout)
        with h5py.File(rebuilt, "r") as g:
            np.testing.assert_array_equal(g["data"][()], truth)


def _heap_object(path: str, name: str) -> tuple[int, int]:
    """(first byte, end) in the file of the global heap object holding ``name``'s mappings."""
    with h5py.File(path, "r") as f:
        addr = h5py.h5o.get_info(f.id, name.encode()).addr
    with open(path, "rb") as raw:
        data = raw.read()
    layout_msg = data.index(bytes([4, 3]), addr)  # layout message version 4, class virtual
    heap = int.from_bytes(data[layout_msg + 2:layout_msg + 10], "little")
    index = int.from_bytes(data[layout_msg + 10:layout_msg + 14], "little")
    pos = heap + 16
    while int.from_bytes(data[pos:pos + 2], "little") != index:
        pos += 16 + (int.from_bytes(data[pos + 8:pos + 16], "little") + 7) // 8 * 8
    size = int.from_bytes(data[pos + 8:pos + 16], "little")
    return pos + 16, pos + 16 + size


def _patch(path: str, pos: int, value: bytes, fix_checksum: tuple[int, int] | None = None) -> None:
    with open(path, "r+b") as raw:
        raw.seek(pos)
        raw.write(value)
        if fix_checksum:  # as if the writer had written these bytes: a valid block
            start, end = fix_checksum
            raw.seek(start)
            body = raw.read(end - 4 - start)
            raw.seek(end - 4)
            raw.write(vds_layout._metadata_checksum()(body, len(body), 0).to_bytes(4, "little"))


@pytest.mark.parametrize("libver", LIBVERS)
def test_any_damaged_byte_of_the_mappings_is_not_answered(tmp_path, libver):
    """Every byte of the mapping block changed in turn: never an answer (the checksum),
    never an exception, never a huge allocation; the other datasets still read."""
    path, _ = _whole_frame_layouts(str(tmp_path), libver)
    start, end = _heap_object(path, "irregular")
    with open(path, "rb") as raw:
        pristine = raw.read()
    for pos in range(start, end):
        with open(path, "wb") as out:
            out.write(pristine)
        _patch(path, pos, bytes([pristine[pos] ^ 0x5A]))
        assert _read_here(path, "irregular") is None, pos
    assert _read_here(path, "whole") is not None


@pytest.mark.parametrize("libver", LIBVERS)
def test_damaged_selections_that_still_checksum_are_what_hdf5_decodes_or_nothing(tmp_path, libver):
    """Bytes a broken writer could have written (checksum right): a frame's other
    dimensions selected in part is not answered; a different frame index is answered
    exactly as HDF5 reads the file."""
    path, _ = _whole_frame_layouts(str(tmp_path), libver)
    start, end = _heap_object(path, "irregular")
    with open(path, "rb") as raw:
        blob = raw.read()[start:end]
    # the virtual selection (20, 4) ends the block: its last block's coordinates are
    # (15, 0) - (15, 3), 4 bytes each (hyperslab version 1), or as few as hold them (version 3)
    def coordinates(enc):
        at = end - 4 - 4 * enc - start  # that block: first0, first1, last0, last1
        return [int.from_bytes(blob[at + i * enc:at + (i + 1) * enc], "little") for i in range(4)]

    (enc,) = [enc for enc in (2, 4, 8) if coordinates(enc) == [15, 0, 15, 3]]
    assert enc == (4 if libver == "earliest" else 2)
    last = end - 4 - 4 * enc
    with open(path, "rb") as raw:
        pristine = raw.read()
    _patch(path, last + 3 * enc, (2).to_bytes(enc, "little"), fix_checksum=(start, end))  # columns 0-2 only
    assert _read_here(path, "irregular") is None
    with open(path, "wb") as out:
        out.write(pristine)
    _patch(path, last, (17).to_bytes(enc, "little"), fix_checksum=(start, end))  # frame 17, not 15
    _patch(path, last + 2 * enc, (17).to_bytes(enc, "little"), fix_checksum=(start, end))
    layout = _read_here(path, "irregular")
    assert layout.mappings[0].frames.tolist() == [0, 1, 2, 7, 8, 17]
    _assert_as_hdf5_reads(path, "irregular", layout.shape, layout.mappings)


def test_what_is_not_a_virtual_dataset_is_none(tmp_path):
    path, _ = _whole_frame_layouts(str(tmp_path), "earliest")
    for name in ("plain", "group", "nope", "group/nope"):
        assert _read_here(path, name) is None, name


def test_an_unreadable_source_is_not_answered_but_hdf5_still_is_asked(tmp_path):
    """Without a source's frame shape nothing says its frames are ours: HDF5 decodes."""
    path, _ = _whole_frame_layouts(str(tmp_path), "earliest")
    os.remove(tmp_path / "x.h5")
    assert _read_here(path, "irregular") is None
    q = FileQuery(path=path, dataset="irregular")
    (facts,) = inspect.answer([q])[q]
    assert facts.exists and facts.shape == (20, 4)
    assert facts.sources == [VdsMapping(range(20), os.path.abspath(path), "/irregular", range(20), (20, 4), (4,))]


@pytest.mark.parametrize("libver", LIBVERS)
def test_an_unlimited_virtual_dataset_is_left_to_hdf5(tmp_path, libver):
    """HDF5 takes an unlimited VDS's extent from its sources: not read from the bytes."""
    with h5py.File(tmp_path / "s.h5", "w") as g:
        g.create_dataset("data", data=np.arange(70000, dtype="i4"), maxshape=(None,), chunks=(1000,))
    path = str(tmp_path / "m.h5")
    with h5py.File(path, "w", libver=libver) as f:
        layout = h5py.VirtualLayout((70000,), "i4", maxshape=(None,))
        vs = h5py.VirtualSource("s.h5", "data", shape=(70000,), maxshape=(None,))
        layout[0:h5py.h5s.UNLIMITED] = vs[0:h5py.h5s.UNLIMITED]
        f.create_virtual_dataset("v", layout)
    assert _read_here(path, "v") is None
    q = FileQuery(path=path, dataset="v")
    (facts,) = inspect.answer([q])[q]  # HDF5's own decoding: not whole frames it can list, so itself
    assert facts.exists and facts.shape == (70000,)
    assert facts.sources == [VdsMapping(range(70000), path, "/v", range(70000), (70000,), ())]


def test_a_path_through_an_external_link_is_left_to_hdf5(tmp_path):
    def make(path, source, target):
        with h5py.File(path, "w") as f:
            layout = h5py.VirtualLayout((4, 2), "i2")
            layout[:] = h5py.VirtualSource(source, "data", shape=(4, 2))
            f.create_group("g").create_virtual_dataset("v", layout)
            f["ext"] = h5py.ExternalLink(target, "/g")

    _sources(str(tmp_path), {"aaaa.h5": ("data", (4, 2))})
    make(tmp_path / "B.h5", "bbbb.h5", "nowhere.h5")
    make(tmp_path / "A.h5", "aaaa.h5", "B.h5")
    path = str(tmp_path / "A.h5")
    assert [m.src_file for m in _read_here(path, "g/v").mappings] == ["aaaa.h5"]
    assert _read_here(path, "ext/v") is None  # it lives in B.h5
