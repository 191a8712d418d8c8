"""Files that open everywhere: the filters written, BLISS's chunk options, and what a
reader without any filter plugin can read."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from nexus_writer_service.io.arrays import ArraySpec, GrowingDataset, StorageOptions, required_plugins
from nexus_writer_service.io.tree import TreeWriter
from nexus_writer_service.mapping.nexus import field, group, stream_field

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


def test_fast_default_and_the_preset_every_reader_opens(tmp_path):
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,)))[0] == [BITSHUFFLE]
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,), compression="gzip"))[0] == [SHUFFLE, DEFLATE]
    assert _spectrum(tmp_path, ArraySpec("uint32", (1024,), compression=""))[0] == []
    assert _spectrum(tmp_path, ArraySpec("uint32", (), compression="gzip"))[0] == []  # scalars: never
    assert required_plugins(["gzip", "", "none"]) == []
    assert required_plugins(["bitshuffle-lz4", "gzip"]) == ["bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)"]
    with pytest.raises(ValueError, match="'gzip' \\(every HDF5 reader opens it\\)"):
        ArraySpec("uint32", (4,), compression="zstd").filter


@pytest.mark.parametrize("options, filters, chunks", [
    # nothing set in BLISS (chunk_options {}): this writer's own choices
    ({}, [BITSHUFFLE], (10, 1024)),
    ({"compression_scheme": "gzip-byteshuffle"}, [SHUFFLE, DEFLATE], (10, 1024)),
    ({"compression_scheme": "gzip"}, [DEFLATE], (10, 1024)),
    ({"compression_scheme": "none"}, [], (10, 1024)),
    # 10 points x 4 KB = 40 KB, below a 1 MB limit: not worth a filter
    ({"compression_limit_nbytes": 1 << 20}, [], (10, 1024)),
    ({"compression_limit_nbytes": 1000}, [BITSHUFFLE], (10, 1024)),
    # chunks of at most 8 KB: 2 points
    ({"chunk_nbytes": 8192}, [BITSHUFFLE], (2, 1024)),
    # blisswriter's split: the spectrum in 4 parts of 256 channels, then points up to 8 KB
    ({"chunk_split": 4, "chunk_nbytes": 8192}, [BITSHUFFLE], (3, 256)),
])
def test_bliss_chunk_options_change_the_chunks_and_filters_written(tmp_path, options, filters, chunks):
    storage, problems = StorageOptions.from_writer_options({"chunk_options": options, "separate_scan_files": None})
    assert problems == []
    compression = storage.compression if storage.compression is not None else "bitshuffle-lz4"
    spec = ArraySpec("uint32", (1024,), compression=compression, expected_points=10, storage=storage)
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


#: a reader as on a fresh machine: plain h5py, and the filter plugins made unreachable
PLAIN_READER = textwrap.dedent("""
    import os, sys
    os.environ["HDF5_PLUGIN_PATH"] = "/nonexistent"
    import h5py
    assert "hdf5plugin" not in sys.modules
    read, failed = 0, []
    for path in sys.argv[1:]:
        with h5py.File(path, "r", locking=False) as f:
            def visit(name, obj):
                global read
                if isinstance(obj, h5py.Dataset):
                    try:
                        obj[()]
                        read += 1
                    except Exception as exc:
                        failed.append(f"{path}::{name}: {exc}")
            f.visititems(visit)
    assert "hdf5plugin" not in sys.modules
    print(read)
    for line in failed:
        print("FAILED", line)
""")


def read_without_plugins(paths) -> tuple[int, list[str]]:
    """(datasets read, failures) by h5py in a process that never imports hdf5plugin."""
    proc = subprocess.run([sys.executable, "-c", PLAIN_READER, *map(str, paths)],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return int(lines[0]), [line for line in lines[1:] if line.startswith("FAILED")]


def test_a_reader_without_plugins_fails_on_the_fast_default_and_reads_the_preset(tmp_path):
    for compression in ("bitshuffle-lz4", "gzip"):
        with h5py.File(tmp_path / f"{compression}.h5", "w") as f:
            specs, tree = _entry(compression)
            writer = TreeWriter(specs)
            writer.write(f, "1.1", tree)
            writer.streams["det:spectrum"].append(np.ones((2, 64), dtype="uint32"))
    read, failed = read_without_plugins([tmp_path / "bitshuffle-lz4.h5"])
    assert len(failed) == 1 and "spectrum" in failed[0]  # the check can fail
    read, failed = read_without_plugins([tmp_path / "gzip.h5"])
    assert failed == [] and read == 4


def test_the_most_specific_choice_of_filter_wins():
    from nexus_writer_service.mapping.beamline import channel_compression
    from nexus_writer_service.mapping.layout import plan_scan
    from nexus_writer_service.metadata.config import loads
    from nexus_writer_service.simulation.recording import load_recording
    from test_mapping import describe

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


def test_a_wrong_compression_in_the_configuration_is_one_line(tmp_path):
    from nexus_writer_service.metadata.config import ConfigError, load

    path = tmp_path / "b.yml"
    path.write_text("detectors:\n  simu1:\n    compression: gzp\n")
    with pytest.raises(ConfigError, match=r"b.yml:3: detectors.simu1.compression: 'gzp' is not a compression "
                                          r"\(did you mean 'gzip'\?"):
        load(str(path))
