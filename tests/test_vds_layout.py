"""Virtual dataset mappings read from the file's bytes (``io.vds_layout``) equal what
HDF5 itself decodes, for every encoding HDF5 writes here; anything else is left to h5py.

No Redis: this is the io layer, checked against h5py on files made in each test.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from nexus_writer_service.descriptions import FileQuery
from nexus_writer_service.io import inspect, vds_layout
from nexus_writer_service.io.inspect import _first_dim
from nexus_writer_service.simulation.lima2 import Lima2Detector, _params, write_master_file, write_receiver_files


def _as_hdf5_decodes(path: str, name: str) -> tuple:
    with h5py.File(path, "r") as f:
        d = f[name]
        return d.shape, [(vs.file_name, vs.dset_name, _first_dim(vs.vspace),
                          None if vs.src_space.get_select_type() == h5py.h5s.SEL_ALL else _first_dim(vs.src_space))
                         for vs in d.virtual_sources()]


def _as_read_here(path: str, name: str) -> tuple:
    with h5py.File(path, "r") as f:
        layout = vds_layout.read_virtual_layout(f, name)
    assert layout is not None
    return layout.shape, [(m.file_name, m.dataset_name, m.virtual.first.tolist(),
                           None if m.source.first is None else m.source.first.tolist()) for m in layout.mappings]


def _layouts(path: str, libver: str, userblock: int = 0) -> list[str]:
    """Virtual datasets of every kind h5py makes, in one file."""
    kwargs = {"userblock_size": userblock} if userblock else {}
    with h5py.File(path, "w", libver=libver, **kwargs) as f:
        f.create_dataset("src", data=np.arange(100 * 6).reshape(100, 2, 3))
        strided = h5py.VirtualLayout((50, 2, 3), "i8")
        strided[0:50:2] = h5py.VirtualSource(".", "src", shape=(100, 2, 3))[10:60:2]  # regular, same file
        strided[1:50:2] = h5py.VirtualSource("other.h5", "data", shape=(25, 2, 3))
        f.create_virtual_dataset("strided", strided, fillvalue=-1)
        for i in range(60):  # enough attributes for the header to continue in another block
            f["strided"].attrs[f"a{i}"] = np.arange(20)
        dealt = h5py.VirtualLayout((40, 4), "f4")
        for k in range(8):  # frames dealt over 8 files (one block per frame)
            dealt[np.arange(k, 40, 8)] = h5py.VirtualSource(f"r_{k}.h5", "data", shape=(5, 4))
        f.create_virtual_dataset("group/dealt", dealt)
        irregular = h5py.VirtualLayout((20, 4), "f4")
        irregular[[0, 1, 2, 7, 8, 15]] = h5py.VirtualSource("x.h5", "d", shape=(10, 4))[[1, 2, 3, 4, 8, 9]]
        f.create_virtual_dataset("irregular", irregular)
        randomly = h5py.VirtualLayout((60, 1, 2, 3), "u2")  # as a conductor deals frames: any order
        owner = np.random.default_rng(7).integers(0, 3, size=60)
        for k in range(3):
            frames = np.flatnonzero(owner == k)
            randomly[frames] = h5py.VirtualSource(f"p_{k}_00000.h5", "e/i/d/data", shape=(len(frames), 1, 2, 3))
        f.create_virtual_dataset("randomly", randomly)
        whole = h5py.VirtualLayout((10, 4), "u2")
        whole[:] = h5py.VirtualSource("y.h5", "d", shape=(10, 4))
        f.create_virtual_dataset("whole", whole)
        f["plain"] = np.zeros(3)
    return ["strided", "group/dealt", "irregular", "randomly", "whole"]


@pytest.mark.parametrize("libver, userblock", [("earliest", 0), ("latest", 0), ("earliest", 1024)])
def test_mappings_equal_what_hdf5_decodes(tmp_path, libver, userblock):
    path = str(tmp_path / "v.h5")
    for name in _layouts(path, libver, userblock):
        assert _as_read_here(path, name) == _as_hdf5_decodes(path, name), name


def test_what_is_not_a_virtual_dataset_is_none(tmp_path):
    path = str(tmp_path / "v.h5")
    _layouts(path, "earliest")
    with h5py.File(path, "r") as f:
        for name in ("plain", "group", "nope", "group/nope"):
            assert vds_layout.read_virtual_layout(f, name) is None, name


def test_a_lima2_master_reads_as_hdf5_decodes_it(tmp_path):
    det = Lima2Detector(receivers=2, frames_per_file=3)
    folder = str(tmp_path / "scan0001")
    write_receiver_files(det, 17, folder)
    master = write_master_file(det, 17, folder, _params(det, folder, 17))
    name = det.data_path.lstrip("/")
    shape, mappings = _as_read_here(master, name)
    assert (shape, mappings) == _as_hdf5_decodes(master, name)
    assert sorted(v for m in mappings for v in m[2]) == list(range(17))  # every frame mapped once


def test_inspect_gives_the_same_facts_with_or_without_the_reader(tmp_path, monkeypatch):
    """``io.inspect`` answers a virtual dataset from the bytes; with the reader off it
    asks HDF5: the facts a kind gets are the same."""
    det = Lima2Detector(receivers=3, frames_per_file=2)
    folder = str(tmp_path / "scan0001")
    write_receiver_files(det, 13, folder)
    master = write_master_file(det, 13, folder, _params(det, folder, 13))
    q = FileQuery(path=master, dataset=det.data_path)

    def facts():
        (got,) = inspect.answer([q])[q]
        return got.exists, got.shape, got.dtype, [
            (list(v), f, d, list(s), tuple(shape)) for v, f, d, s, shape in got.sources]

    fast = facts()
    monkeypatch.setattr(inspect, "read_virtual_layout", lambda f, name: None)
    assert facts() == fast
    assert fast[0] and fast[1][0] == 13 and len(fast[3]) == 3 + 2 + 2  # 5, 4, 4 frames per rank, 2 per file


def test_bytes_it_does_not_know_fall_back_to_hdf5(tmp_path):
    """A damaged mapping block (here: its number of mappings) is not guessed at."""
    path = str(tmp_path / "v.h5")
    _layouts(path, "earliest")
    with h5py.File(path, "r") as f:
        addr = h5py.h5o.get_info(f.id, b"irregular").addr
    with open(path, "rb") as raw:
        data = raw.read()
    layout_msg = data.index(bytes([4, 3]), addr)  # layout message version 4, class virtual
    heap = int.from_bytes(data[layout_msg + 2:layout_msg + 10], "little")
    index = int.from_bytes(data[layout_msg + 10:layout_msg + 14], "little")
    pos = heap + 16
    while int.from_bytes(data[pos:pos + 2], "little") != index:
        pos += 16 + (int.from_bytes(data[pos + 8:pos + 16], "little") + 7) // 8 * 8
    count_at = pos + 16 + 1  # object header (16), blob version (1), then the count
    with open(path, "r+b") as raw:
        raw.seek(count_at)
        raw.write((5).to_bytes(8, "little"))
    with h5py.File(path, "r") as f:
        assert vds_layout.read_virtual_layout(f, "irregular") is None
    q = FileQuery(path=path, dataset="strided")
    assert inspect.answer([q])[q][0].exists  # the other datasets still read
    assert os.path.getsize(path) == len(data)


def test_damaged_bytes_never_raise_nor_ask_for_gigabytes(tmp_path):
    """Random bytes of a master's mapping block changed: an answer HDF5 would also give
    the bytes as they are, or None; never an exception, never a huge selection."""
    det = Lima2Detector(receivers=2, frames_per_file=3)
    folder = str(tmp_path / "scan0001")
    write_receiver_files(det, 12, folder)
    master = write_master_file(det, 12, folder, _params(det, folder, 12))
    name = det.data_path.lstrip("/")
    with open(master, "rb") as raw:
        data = bytearray(raw.read())
    heap = data.index(b"GCOL")
    rng = np.random.default_rng(0)
    damaged = str(tmp_path / "damaged.h5")
    for _ in range(200):
        copy = bytearray(data)
        for pos in rng.integers(heap, heap + 600, size=3):
            copy[pos] = int(rng.integers(0, 256))
        with open(damaged, "wb") as out:
            out.write(copy)
        with h5py.File(damaged, "r", locking=False) as f:
            layout = vds_layout.read_virtual_layout(f, name)
        if layout is not None:
            assert layout.shape[0] == 12
            assert all(m.virtual.first is None or len(m.virtual.first) <= 12 for m in layout.mappings)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_an_unlimited_virtual_dataset_is_left_to_hdf5(tmp_path, libver):
    """HDF5 takes an unlimited VDS's extent from its sources: not read from the bytes
    (the unlimited marker read as a count gave no frame, or 65535)."""
    with h5py.File(tmp_path / "s.h5", "w") as g:
        g.create_dataset("data", data=np.arange(70000, dtype="i4"), maxshape=(None,), chunks=(1000,))
    path = str(tmp_path / "m.h5")
    with h5py.File(path, "w", libver=libver) as f:
        layout = h5py.VirtualLayout((70000,), "i4", maxshape=(None,))
        vs = h5py.VirtualSource("s.h5", "data", shape=(70000,), maxshape=(None,))
        layout[0:h5py.h5s.UNLIMITED] = vs[0:h5py.h5s.UNLIMITED]
        f.create_virtual_dataset("v", layout)
    with h5py.File(path, "r") as f:
        assert vds_layout.read_virtual_layout(f, "v") is None
    q = FileQuery(path=path, dataset="v")
    (facts,) = inspect.answer([q])[q]  # HDF5's own decoding cannot list it: reported, never raised
    assert facts.sources == [] or sum(len(v) for v, *_ in facts.sources) == 70000


def test_a_path_through_an_external_link_is_left_to_hdf5(tmp_path):
    def make(path, source, target):
        with h5py.File(path, "w") as f:
            layout = h5py.VirtualLayout((4, 2), "i2")
            layout[:] = h5py.VirtualSource(source, "data", shape=(4, 2))
            f.create_group("g").create_virtual_dataset("v", layout)
            f["ext"] = h5py.ExternalLink(target, "/g")

    make(tmp_path / "B.h5", "bbbb.h5", "nowhere.h5")
    make(tmp_path / "A.h5", "aaaa.h5", "B.h5")
    with h5py.File(tmp_path / "A.h5", "r") as f:
        assert [m.file_name for m in vds_layout.read_virtual_layout(f, "g/v").mappings] == ["aaaa.h5"]
        assert vds_layout.read_virtual_layout(f, "ext/v") is None  # it lives in B.h5
