"""Plain blissdata JSON streams (``Stream.make_definition(name, "json")``, info ``{}``).

BLISS 2.4 controllers may publish any JSON events (statuses, metadata per
point); blissdata reads them as a plain ``Stream`` of kind ``"json"``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..transport.blissdata_api import Stream
from .recording import ScanRecording, StreamRecording


def add_json(rec: ScanRecording, name: str, events: Iterable, *,
             points: Sequence[int] | None = None) -> ScanRecording:
    """``rec`` with a JSON stream ``name`` sending ``events`` while the scan runs.

    ``points`` (non-decreasing) gives the scan point with which each event is
    sent; by default the events are spread evenly over the scan's points.
    The stream is not declared in scan_info (blissdata needs no declaration).
    """
    rec = rec.copy()
    events = list(events)
    definition = Stream.make_definition(name, "json")
    npoints = rec.npoints or 1
    if points is None:
        points = [j * npoints // len(events) for j in range(len(events))] if events else []
    if len(points) != len(events):
        raise ValueError("one point per event")
    rec.streams.append(StreamRecording(name, dict(definition.info), definition.encoder.info(), events,
                                       points=np.asarray(points, dtype=np.int64)))
    return rec
