"""Where the pixels of EDF frames sit, so HDF5 can point at them (external raw storage).

Only frames stored raw (no compression, little endian) qualify; the others are
None and stay referenced by URL only.
"""

from __future__ import annotations

import numpy as np

_EDF_TYPES = {
    "UnsignedByte": "u1", "SignedByte": "i1", "UnsignedShort": "u2", "SignedShort": "i2",
    "UnsignedInteger": "u4", "SignedInteger": "i4", "UnsignedLong": "u4", "SignedLong": "i4",
    "FloatValue": "f4", "Float": "f4", "DoubleValue": "f8", "Double": "f8",
}


def frame_layout(path: str) -> list[tuple[int, int, str] | None] | None:
    """(byte offset, byte size, dtype) of every frame of an EDF file (None: not raw);
    None if the file cannot be read."""
    import fabio  # only needed for non-HDF5 detectors

    try:
        image = fabio.open(path)
    except (OSError, ValueError):
        return None
    try:
        out = []
        for frame in image._frames:  # fabio keeps each frame's byte range
            header = frame.header
            kind = _EDF_TYPES.get(header.get("DataType", ""))
            raw = not header.get("Compression") and header.get("ByteOrder", "LowByteFirst") == "LowByteFirst"
            out.append((int(frame.start), int(frame.size), np.dtype("<" + kind).str) if raw and kind else None)
        return out
    except (AttributeError, KeyError, TypeError):
        return None
    finally:
        image.close()
