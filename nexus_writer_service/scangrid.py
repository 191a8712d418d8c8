"""The shape of a scan's points (a mesh's grid), from its scan_info: read by the
mapping (plots in the mesh's shape) and by the kinds (frames in the same shape).
"""

from __future__ import annotations


def mesh_shape(info: dict) -> tuple[int, int] | None:
    """(slow, fast) points of a 2D scan (a mesh), from its scan_info; None otherwise."""
    n1, n2 = info.get("npoints1"), info.get("npoints2")
    if info.get("data_dim") == 2 and isinstance(n1, int) and isinstance(n2, int) and n1 > 0 and n2 > 0:
        return n2, n1  # slow, fast
    return None
