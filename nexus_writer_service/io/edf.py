"""Where the pixels of EDF frames sit, so HDF5 can point at them (external raw storage).

An EDF file (ESRF data format, what lima saves with ``file_format`` EDF) is a sequence of
frames, each an ASCII header ``{ key = value ; ... }`` followed by its binary block. Only the
headers are read here (no pixel is), with the format's own rules as fabio applies them: the
header ends at ``}`` + newline; the block size is ``Size``, else ``EDF_BinarySize``, else
the pixels' size; keys are case-insensitive; pixels are ``Dim_1`` x ``Dim_2`` x ... of
``DataType``. Only frames stored raw (no compression, little endian, a known type) qualify; the
others are None and stay referenced by URL only. Files using EDF's rarer features (general
blocks, a binary part in another file) give None: the frames keep their URLs.

tests/unit/io/test_edf_layout.py compares the answers with fabio's reading of the same files.
"""

from __future__ import annotations

import os
import re

import numpy as np

#: EDF data types (as fabio knows them) of numbers whose bytes HDF5 reads as they are
_EDF_TYPES = {
    "SignedByte": "i1", "Signed8": "i1", "UnsignedByte": "u1", "Unsigned8": "u1",
    "SignedShort": "i2", "Signed16": "i2", "UnsignedShort": "u2", "Unsigned16": "u2",
    "UnsignedShortInteger": "u2", "SignedInteger": "i4", "Signed32": "i4", "UnsignedInteger": "u4",
    "Unsigned32": "u4", "SignedLong": "i4", "UnsignedLong": "u4", "Signed64": "i8", "Unsigned64": "u8",
    "FloatValue": "f4", "FLOATVALUE": "f4", "FLOAT": "f4", "Float": "f4", "FloatIEEE32": "f4",
    "Float32": "f4", "Double": "f8", "DoubleValue": "f8", "FloatIEEE64": "f8", "DoubleIEEE64": "f8",
}
_HEADER_END = re.compile(rb"}\r?\n")
#: a header longer than this is not a header (fabio: 512 blocks of 512 bytes)
_MAX_HEADER = 512 * 512
_WHITESPACE = b" \t\r\n\x00"


def frame_layout(path: str) -> list[tuple[int, int, str] | None] | None:
    """(byte offset, byte size, dtype) of every frame of an EDF file (None: not raw);
    None if the file cannot be read as EDF, or uses features not followed here."""
    try:
        with open(path, "rb") as f:
            return _frames(f, os.fstat(f.fileno()).st_size)
    except (OSError, ValueError, KeyError):
        return None


def _frames(f, file_size: int) -> list | None:
    out: list = []
    pos = 0
    while pos < file_size:
        found = _header(f, pos, file_size)
        if found is None:  # only padding left
            break
        header, start = found
        if "EDF_DATAFORMATVERSION" in header or "EDF_BINARYFILENAME" in header:
            return None  # a general block, or pixels in another file
        kind = _EDF_TYPES.get(header.get("DATATYPE", ""))
        dims = _dims(header)
        pixels = int(np.prod(dims)) * np.dtype(kind).itemsize if kind and dims else None
        compression = header.get("COMPRESSION", "").upper()
        raw = compression in ("", "NONE") or compression.startswith("NO")
        size = header.get("SIZE", header.get("EDF_BINARYSIZE"))  # fabio's order
        if size is not None:
            block = int(size)
        elif raw and pixels is not None:
            block = pixels
        else:
            return None  # where the next frame starts is not known
        little = header.get("BYTEORDER", "LowByteFirst") == "LowByteFirst"
        if raw and little and kind and pixels is not None and pixels <= block and start + pixels <= file_size:
            out.append((start, pixels, np.dtype("<" + kind).str))
        else:
            out.append(None)
        pos = start + block
    return out or None


def _header(f, pos: int, file_size: int) -> tuple[dict[str, str], int] | None:
    """({KEY: value}, offset of the binary block) of the header at ``pos``; None at the end."""
    f.seek(pos)
    chunk = f.read(4096)
    begin = chunk.find(b"{")
    if begin < 0 or chunk[:begin].strip(_WHITESPACE):
        if not chunk.strip(_WHITESPACE) and pos + len(chunk) >= file_size:
            return None
        raise ValueError(f"no EDF header at byte {pos}")
    while True:
        end = _HEADER_END.search(chunk, begin + 1)
        if end is not None:
            break
        more = f.read(max(4096, len(chunk)))
        if not more or len(chunk) > _MAX_HEADER:
            raise ValueError(f"EDF header at byte {pos} does not end")
        chunk += more
    header = {}
    for line in chunk[begin + 1:end.start()].split(b";"):
        if b"=" in line:
            key, value = line.split(b"=", 1)
            header[key.strip(_WHITESPACE).decode("latin-1").upper()] = value.strip(_WHITESPACE).decode("latin-1")
    return header, pos + end.end()


def _dims(header: dict[str, str]) -> list[int] | None:
    """Dim_1, Dim_2, ... (missing ones are 1; no Dim_1: unknown)."""
    if "DIM_1" not in header:
        return None
    rank = max(int(k[4:]) for k in header if k.startswith("DIM_") and k[4:].isdigit())
    return [int(header.get(f"DIM_{i}", 1)) for i in range(1, rank + 1)]
