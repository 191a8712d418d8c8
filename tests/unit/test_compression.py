"""Files that open everywhere: the filters written (gzip by default, bitshuffle-LZ4 on
request), BLISS's chunk options, the chunks we deflate ourselves (threads + direct chunk
write) read back by HDF5's own filters, and what a reader without any filter plugin reads."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from nexus_writer_service import compression
from nexus_writer_service.compression import required_plugins
from nexus_writer_service.io.arrays import ArraySpec, GrowingDataset, StorageOptions
from nexus_writer_service.io.tree import TreeWriter
from nexus_writer_service.nxnodes import field, group, stream_field
from readers import digests, read_without_plugins

BITSHUFFLE = 32008
DEFLATE, SHUFFLE = h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE


def _filters(dset: h5py.Dataset) -> list[int]:
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def _spectrum(tmp_path, spec: ArraySpec, name="a.h5"):
    with h5py.File(tmp_path / name, "w") as f:
        arr = GrowingDataset.create(f, "spectrum", spec)
        arr.append(np.arange(3 * 1024, dtype="uint32").reshape((3, 1024) if spec.point_shape else (-1,)))
        return _filters(arr.dset), arr.dset.chunks


def test_the_default_every_reader_opens_and_the_fast_preset(tmp_path):
    from nexus_writer_service.writer.config import WriterConfig

    assert compression.DEFAULT == WriterConfig().compression == "gzip"
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,)))[0] == [SHUFFLE, DEFLATE]
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,), compression="bitshuffle-lz4"))[0] == [BITSHUFFLE]
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,), compression="deflate"))[0] == [DEFLATE]
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,), compression=""))[0] == []
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,), compression="none"))[0] == []
    assert _spectrum(tmp_path, ArraySpec("uint32", (), compression="gzip"))[0] == []  # scalars: never
    assert required_plugins(["gzip", "", "none", "deflate"]) == []
    assert required_plugins(["bitshuffle-lz4", "gzip"]) == ["bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)"]
    with pytest.raises(ValueError, match=r"'zstd' is not a compression \(use 'gzip' \(default: every HDF5 "
                                         r"reader opens it\), 'bitshuffle-lz4' \(fast, readers need the plugin\)"):
        ArraySpec("uint32", (4,), compression="zstd").filter


def test_presets_are_defined_once():
    """The YAML schema, the command line, BLISS's names and the io layer take them from one place."""
    from nexus_writer_service.apps.session_writer import parser
    from nexus_writer_service.io import arrays
    from nexus_writer_service.metadata.config import schema

    assert not hasattr(arrays, "FILTER_PLUGINS") and not hasattr(schema, "check_compression")
    assert schema.Compression.__metadata__[0].func is compression.check
    assert parser().get_default("compression") == compression.DEFAULT
    assert StorageOptions.from_writer_options({"chunk_options": {"compression_scheme": "gzip-byteshuffle"}})[0] \
        == StorageOptions(compression="gzip")
    assert [compression.canonical(n) for n in ("none", "", None, "GZIP", "lz4-bitshuffle")] == \
        ["", "", "", "gzip", "bitshuffle-lz4"]


@pytest.mark.parametrize("options, filters, chunks", [
    # nothing set in BLISS (chunk_options {}): this writer's own choices
    ({}, [SHUFFLE, DEFLATE], (10, 1024)),
    ({"compression_scheme": "gzip-byteshuffle"}, [SHUFFLE, DEFLATE], (10, 1024)),
    ({"compression_scheme": "gzip"}, [DEFLATE], (10, 1024)),
    ({"compression_scheme": "none"}, [], (10, 1024)),
    # 10 points x 4 KB = 40 KB, below a 1 MB limit: not worth a filter
    ({"compression_limit_nbytes": 1 << 20}, [], (10, 1024)),
    ({"compression_limit_nbytes": 1000}, [SHUFFLE, DEFLATE], (10, 1024)),
    ({"compression_limit_nbytes": 1000, "compression_scheme": "lz4-bitshuffle"}, [BITSHUFFLE], (10, 1024)),
    # chunks of at most 8 KB: 2 points
    ({"chunk_nbytes": 8192}, [SHUFFLE, DEFLATE], (2, 1024)),
    # blisswriter's split: the spectrum in 4 parts of 256 channels, then points up to 8 KB
    ({"chunk_split": 4, "chunk_nbytes": 8192}, [SHUFFLE, DEFLATE], (3, 256)),
])
def test_bliss_chunk_options_change_the_chunks_and_filters_written(tmp_path, options, filters, chunks):
    storage, problems = StorageOptions.from_writer_options({"chunk_options": options, "separate_scan_files": None})
    assert problems == []
    choice = storage.compression if storage.compression is not None else compression.DEFAULT
    spec = ArraySpec("uint32", (1024,), compression=choice, expected_points=10, storage=storage)
    assert _spectrum(tmp_path, spec) == (filters, chunks)


def test_bad_bliss_chunk_options_are_reported_and_ignored():
    storage, problems = StorageOptions.from_writer_options(
        {"chunk_options": {"chunk_nbytes": -1, "compression_scheme": "zip", "chunk_split": 2}})
    assert storage == StorageOptions(chunk_split=2)
    assert problems == ["writer_options.chunk_options.chunk_nbytes: -1 ignored (expected a positive number)",
                        "writer_options.chunk_options.compression_scheme: 'zip' ignored (BLISS names: none, gzip, "
                        "byteshuffle, gzip-byteshuffle, bitshuffle, lz4-bitshuffle)"]
    assert StorageOptions.from_writer_options({}) == (StorageOptions(), [])
    assert StorageOptions.from_writer_options(None) == (StorageOptions(), [])


def _entry(compression: str):
    specs = {"det:spectrum": ArraySpec("uint32", (64,), compression=compression),
             "det:value": ArraySpec("float64", ())}
    tree = group("NXentry", {
        "instrument": group("NXinstrument", {"det": group("NXdetector", {
            "spectrum": stream_field("det:spectrum"), "value": stream_field("det:value")})}),
        "writer": group("NXnote", {"status": field("WRITING")}),
    })
    return specs, tree


def test_the_file_states_the_filter_plugins_its_data_need(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        specs, tree = _entry("gzip")
        TreeWriter(specs).write(f, "1.1", tree)
        assert f.attrs["required_filter_plugins"] == "none"
        assert f["1.1/writer/required_filter_plugins"][()] == b"none"
        specs, tree = _entry("bitshuffle-lz4")
        TreeWriter(specs).write(f, "2.1", tree)
        plugin = "bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)"
        assert f["2.1/writer/required_filter_plugins"][()].decode() == plugin
        assert f.attrs["required_filter_plugins"] == plugin
        specs, tree = _entry("gzip")
        TreeWriter(specs).write(f, "3.1", tree)
        assert f["3.1/writer/required_filter_plugins"][()] == b"none"
        assert f.attrs["required_filter_plugins"] == plugin  # 2.1 still needs it


def test_a_reader_without_plugins_reads_the_default_and_fails_on_the_fast_preset(tmp_path):
    for preset in ("bitshuffle-lz4", "gzip"):
        with h5py.File(tmp_path / f"{preset}.h5", "w") as f:
            specs, tree = _entry(preset)
            writer = TreeWriter(specs)
            writer.write(f, "1.1", tree)
            writer.streams["det:spectrum"].append(np.ones((2, 64), dtype="uint32"))
            writer.streams["det:spectrum"].close()
    path = tmp_path / "bitshuffle-lz4.h5"
    plain, failed = read_without_plugins([path])
    assert [line.partition(": ")[0] for line in failed] == [f"{path}::1.1/instrument/det/spectrum"]  # it can fail
    path = tmp_path / "gzip.h5"
    plain, failed = read_without_plugins([path])
    assert failed == [] and plain == digests([path]) and len(plain) == 4


def test_the_most_specific_choice_of_filter_wins():
    from nexus_writer_service.mapping.beamline import channel_compression
    from nexus_writer_service.mapping.layout import plan_scan
    from nexus_writer_service.metadata.config import loads
    from nexus_writer_service.simulation.recording import load_recording
    from describing import describe

    cfg = loads("compression: gzip\ndetectors:\n  simu1: {name: fluo, compression: none}\n"
                "  spectrum_det1: {compression: bitshuffle-lz4}\n")
    plan = plan_scan(describe(load_recording("10_loopscan_mca")), cfg)
    det0, det1 = plan.channel("simu1:spectrum_det0"), plan.channel("simu1:spectrum_det1")
    assert det0.group == "fluo_det0"
    assert channel_compression(det0, cfg, "deflate", "bitshuffle-lz4") == ""  # the controller's
    assert channel_compression(det1, cfg, "deflate", "bitshuffle-lz4") == "bitshuffle-lz4"  # the channel's
    plain = loads("compression: gzip\n")
    assert channel_compression(det0, plain, "deflate", "bitshuffle-lz4") == "deflate"  # the scan's (BLISS)
    assert channel_compression(det0, plain, None, "bitshuffle-lz4") == "gzip"  # the beamline's
    assert channel_compression(det0, loads(""), None, "bitshuffle-lz4") == "bitshuffle-lz4"  # the writer's
    assert channel_compression(det0, loads(""), None, "none") == ""


def test_a_wrong_compression_in_the_configuration_is_one_line(tmp_path):
    from nexus_writer_service.metadata.config import ConfigError, load

    path = tmp_path / "b.yml"
    path.write_text("detectors:\n  simu1:\n    compression: gzp\n")
    with pytest.raises(ConfigError, match=r"b.yml:3: detectors.simu1.compression: 'gzp' is not a compression "
                                          r"\(did you mean 'gzip'\?"):
        load(str(path))


# -- the chunks we deflate ourselves ------------------------------------------------------

def _batches(n: int, sizes) -> list[tuple[int, int]]:
    out, start, k = [], 0, 0
    while start < n:
        stop = min(n, start + sizes[k % len(sizes)])
        out.append((start, stop))
        start, k = stop, k + 1
    return out


@pytest.mark.parametrize("dtype, point_shape, preset", [
    ("uint32", (1024,), "gzip"),
    ("float64", (7, 3), "gzip"),
    ("int16", (100,), "deflate"),
    ("uint8", (33,), "gzip"),
    ("bool", (16,), "gzip"),
    (">i4", (64,), "gzip"),  # big-endian data: shuffled as stored
])
def test_deflated_chunks_are_decoded_by_hdf5s_own_filters(tmp_path, dtype, point_shape, preset):
    """Chunks shuffled and deflated in worker threads, written with the direct chunk write:
    HDF5's filter pipeline reads back exactly the points appended, in any batch pattern,
    with points grown over (fill values) and after a resume of the entry."""
    rng = np.random.default_rng(0)
    n = 1000
    data = (rng.integers(0, 50, size=(n,) + point_shape) * 3).astype(dtype)
    spec = ArraySpec(dtype, point_shape, fillvalue=0, compression=preset, expected_points=n)
    path = tmp_path / "d.h5"
    expected = data.copy()
    expected[400:437] = 0  # grown over: never arrived
    with h5py.File(path, "w") as f:
        arr = GrowingDataset.create(f, "x", spec)
        assert arr._deflater is not None and arr.dset.chunks[1:] == point_shape
        for start, stop in _batches(400, [1, 7, 64, 3, 200]):
            arr.append(data[start:stop])
        arr.grow(37)
        for start, stop in _batches(n - 437, [50, 1, 129]):
            arr.append(data[437 + start:437 + stop][: 700 - (437 + start)] if 437 + start < 700 else data[:0])
        arr.close()
    with h5py.File(path, "a") as f:  # resumed: the partial last chunk is read back and completed
        arr = GrowingDataset(f["x"], spec)
        assert arr.length == 700
        for start, stop in _batches(n - 700, [13, 100]):
            arr.append(data[700 + start:700 + stop])
        arr.close()
    with h5py.File(path, "r") as f:
        dset = f["x"]
        assert _filters(dset) == ([SHUFFLE, DEFLATE] if preset == "gzip" else [DEFLATE])
        assert dset.dtype == np.dtype(dtype) and dset.shape == (n,) + point_shape
        assert np.array_equal(dset[()], expected)
        rows = dset.chunks[0]
        # what HDF5 would have stored: the chunk decompressed and unshuffled is the data
        _, raw = dset.id.read_direct_chunk((0,) * (1 + len(point_shape)))
        plain = np.frombuffer(__import__("zlib").decompress(raw), dtype=np.uint8)
        size = np.dtype(dtype).itemsize
        if preset == "gzip" and size > 1:
            plain = plain.reshape(size, -1).T.copy()
        chunk = plain.reshape(-1).view(dset.dtype).reshape(dset.chunks)
        assert np.array_equal(chunk[: min(rows, n)], expected[:rows])
    plain, failed = read_without_plugins([path])
    assert failed == [] and plain == digests([path]) and len(plain) == 1


def test_deflated_points_reach_the_file_at_each_flush(tmp_path):
    """A reader in another process sees the points of a partial chunk after the writer's
    flush (``sync`` writes them), and the whole chunk once it is complete; the dataset's
    length in the file never covers points whose data are not there (a writer killed
    after a flush of the file's metadata leaves no zeros a resumed entry would keep)."""
    path = tmp_path / "live.h5"
    spec = ArraySpec("uint32", (256,), compression="gzip", expected_points=100)
    data = np.arange(100 * 256, dtype="uint32").reshape(100, 256)
    reader = ("import h5py, sys; f = h5py.File(sys.argv[1], 'r', locking=False); x = f['x'][()]; "
              "print(x.shape[0], int(x[:, 1:].sum()))")

    def seen():
        out = subprocess.run([sys.executable, "-c", reader, str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return tuple(int(v) for v in out.stdout.split())

    with h5py.File(path, "w") as f:
        arr = GrowingDataset.create(f, "x", spec)
        arr.append(data[:10])
        f.flush()
        assert seen() == (0, 0)  # nothing yet: the points are in memory, and the length says so
        arr.sync()
        f.flush()
        assert seen() == (10, int(data[:10, 1:].sum()))
        arr.append(data[10:60])
        f.flush()  # HDF5's metadata without a sync: the length stays with the data written
        assert seen() == (10, int(data[:10, 1:].sum()))
        arr.append(data[60:])
        arr.sync()
        f.flush()
        assert seen() == (100, int(data[:, 1:].sum()))
        arr.close()


def test_deflating_does_not_hold_the_interpreter(tmp_path):
    """The chunks are deflated in worker threads: another Python thread keeps running
    while a large dataset is written (HDF5's own filter would hold h5py's lock and the GIL)."""
    import threading
    import time

    spec = ArraySpec("uint32", (4096,), compression="gzip", expected_points=2000)
    data = np.random.default_rng(1).integers(0, 1000, size=(2000, 4096)).astype("uint32")
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    with h5py.File(tmp_path / "g.h5", "w") as f:
        arr = GrowingDataset.create(f, "x", spec)
        thread = threading.Thread(target=ticker)
        thread.start()
        t0 = time.perf_counter()
        for start in range(0, 2000, 50):
            arr.append(data[start:start + 50])
        arr.close()
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join()
        assert np.array_equal(f["x"][-5:], data[-5:])
    gaps = np.diff(ticks)
    assert elapsed > 0.05 and gaps.max() < max(0.05, elapsed / 4), (elapsed, gaps.max())
