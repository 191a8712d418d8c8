"""Where the pixels of EDF frames sit, so HDF5 can point at them (external raw storage).

Only frames stored raw (no compression) qualify; anything else returns None and
the frames stay referenced by URL only.
"""

from __future__ import annotations

import numpy as np

_EDF_TYPES = {
    "UnsignedByte": "u1", "SignedByte": "i1", "UnsignedShort": "u2", "SignedShort": "i2",
    "UnsignedInteger": "u4", "SignedInteger": "i4", "UnsignedLong": "u4", "SignedLong": "i4",
    "FloatValue": "f4", "Float": "f4", "DoubleValue": "f8", "Double": "f8",
}


def raw_layout(refs, dtype: str) -> list[tuple[str, int, int]] | None:
    """(file, byte offset, byte size) per frame reference, or None if one is not raw."""
    import fabio  # only needed for non-HDF5 detectors

    want = np.dtype(dtype)
    opened: dict[str, object] = {}
    out = []
    try:
        for fmt, path, _data_path, index in refs:
            if str(fmt).upper() != "EDF":  # EDFLZ4, CBF...: compressed, not raw
                return None
            image = opened.get(path) or opened.setdefault(path, fabio.open(path))
            frame = image._frames[index]  # fabio keeps each frame's byte range
            header = frame.header
            if header.get("Compression") or header.get("ByteOrder", "LowByteFirst") != "LowByteFirst":
                return None
            kind = _EDF_TYPES.get(header.get("DataType", ""))
            if kind is None or np.dtype("<" + kind) != want.newbyteorder("<"):
                return None
            out.append((path, int(frame.start), int(frame.size)))
    except (OSError, IndexError, AttributeError, KeyError):
        return None
    finally:
        for image in opened.values():
            image.close()
    return out
