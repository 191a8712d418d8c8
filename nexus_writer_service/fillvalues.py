"""The value that stands for a point or frame that never arrived: decided here only.

Mapping declares it (``@fill_value`` on growing datasets and virtual datasets) and
``io`` gives it to HDF5, so what the file says and what a reader gets agree:
NaN for floating point data (no real measurement is NaN by accident), 0 otherwise.
"""

from __future__ import annotations

import numpy as np

_FILL = {"f": float("nan"), "c": float("nan"), "i": 0, "u": 0, "b": False}


def fill_value(dtype) -> float | int | bool:
    return _FILL.get(np.dtype(dtype).kind, 0)
