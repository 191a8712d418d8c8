"""io/edf.py reads EDF headers itself (no fabio in the writer): its answers against fabio's.

fabio (ESRF's reference EDF library) writes the files and reads the frames back; every frame
our layout says is raw must hold, at its offset, exactly the pixels fabio decodes.
"""

from __future__ import annotations

import numpy as np
import pytest

from nexus_writer_service.io.edf import frame_layout

fabio = pytest.importorskip("fabio")
from fabio.edfimage import EdfImage  # noqa: E402


def _write(path, frames, header=None):
    edf = EdfImage(data=frames[0], header=dict(header or {}))
    for frame in frames[1:]:
        edf.append_frame(data=frame, header=dict(header or {}))
    edf.write(str(path))
    return str(path)


def _pixels_at(path, layout):
    with open(path, "rb") as f:
        out = []
        for offset, size, dtype in layout:
            f.seek(offset)
            out.append(np.frombuffer(f.read(size), dtype=dtype))
        return out


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64",
                                   "float32", "float64"])
def test_raw_frames_hold_fabios_pixels(tmp_path, dtype):
    rng = np.random.default_rng(1)
    frames = [(rng.random((7, 5)) * 100).astype(dtype) for _ in range(4)]
    path = _write(tmp_path / f"f_{dtype}.edf", frames, {"motor_pos": "1.5 2.5", "long": "x" * 900})
    layout = frame_layout(path)
    assert layout is not None and len(layout) == 4 and None not in layout
    assert [np.dtype(d) for _, _, d in layout] == [np.dtype(dtype).newbyteorder("<")] * 4
    assert all(size == 7 * 5 * np.dtype(dtype).itemsize for _, size, _ in layout)
    image = fabio.open(path)
    expected = [image.getframe(i).data for i in range(image.nframes)]
    for ours, theirs in zip(_pixels_at(path, layout), expected):
        np.testing.assert_array_equal(ours.reshape(theirs.shape), theirs)


def _handmade(path, frames):
    """An EDF file from (header, bytes) pairs, headers padded to 512 bytes as the format says."""
    with open(path, "wb") as f:
        for header, payload in frames:
            text = "{\n" + "".join(f"{k} = {v} ;\n" for k, v in header.items())
            text += " " * (-(len(text) + 2) % 512) + "}\n"
            f.write(text.encode() + payload)
    return str(path)


def test_big_endian_compressed_and_unknown_frames_are_not_raw(tmp_path):
    pixels = np.arange(12, dtype=">u2")
    common = {"Dim_1": 4, "Dim_2": 3, "DataType": "UnsignedShort", "Size": 24, "ByteOrder": "LowByteFirst"}
    path = _handmade(tmp_path / "mixed.edf", [
        ({**common, "ByteOrder": "HighByteFirst"}, pixels.tobytes()),
        ({**common, "ByteOrder": "LowByteFirst"}, pixels.astype("<u2").tobytes()),
        ({**common, "ByteOrder": "LowByteFirst", "Compression": "gzip", "Size": 5}, b"12345"),
        ({**common, "DataType": "FloatIEEE128", "Dim_1": 1}, bytes(24)),
        ({**{k: v for k, v in common.items() if k != "Size"}, "EDF_BinarySize": 30}, bytes(30)),
        ({**common, "ByteOrder": "LowByteFirst", "Compression": "None"}, pixels.astype("<u2").tobytes()),
    ])
    layout = frame_layout(path)
    start = [512 * (i + 1) + 24 * min(i, 2) + 5 * (i > 2) + 24 * (i > 3) + 30 * (i > 4) for i in range(6)]
    assert layout == [None, (start[1], 24, "<u2"), None, None, (start[4], 24, "<u2"), (start[5], 24, "<u2")]
    image = fabio.open(path)  # fabio agrees on where the raw frames are
    np.testing.assert_array_equal(image.getframe(1).data.ravel(), pixels)
    np.testing.assert_array_equal(image.getframe(5).data.ravel(), pixels)


def test_general_blocks_and_external_binaries_keep_their_urls(tmp_path):
    common = {"Dim_1": 2, "Dim_2": 2, "DataType": "UnsignedByte", "Size": 4}
    assert frame_layout(_handmade(tmp_path / "g.edf", [({"EDF_DataFormatVersion": "2.0"}, b""),
                                                       (common, bytes(4))])) is None
    assert frame_layout(_handmade(tmp_path / "x.edf", [({**common, "EDF_BinaryFileName": "x.bin"}, b"")])) is None


def test_not_edf_and_missing_files(tmp_path):
    assert frame_layout(str(tmp_path / "nothing.edf")) is None
    (tmp_path / "text.edf").write_text("hello")
    assert frame_layout(str(tmp_path / "text.edf")) is None
    (tmp_path / "runaway.edf").write_bytes(b"{ Size = 10 ; " + b" " * 300000)
    assert frame_layout(str(tmp_path / "runaway.edf")) is None


def test_truncated_last_frame_is_not_raw(tmp_path):
    path = _write(tmp_path / "t.edf", [np.ones((10, 10), "u2")] * 3)
    data = open(path, "rb").read()
    whole = frame_layout(path)
    open(path, "wb").write(data[:-50])
    layout = frame_layout(path)
    assert layout[:2] == whole[:2] and None not in layout[:2] and layout[2] is None
