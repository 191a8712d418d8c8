"""The appender (``writer/streaming.py``): batches into datasets, resumed entries' points
skipped, points trimmed from Redis grown over, broken streams said; tested from tables with
datasets that only count (no Redis, no HDF5)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nexus_writer_service.transport.scans import Batch
from nexus_writer_service.writer.streaming import Appender


class Counted:
    """A growing dataset that keeps what it is given."""

    chunk_bytes = 64

    def __init__(self, values=(), missing=0):
        self.values = list(values)
        self.missing = missing

    @property
    def length(self) -> int:
        return len(self.values)

    def grow(self, n: int) -> None:
        self.values += [None] * n

    def append(self, data) -> None:
        self.values += list(data)


class Kind:
    """A stream kind that receives events (does not append)."""

    appends = False

    def __init__(self):
        self.events: list = []

    def on_events(self, data, lost):
        self.events.append((list(data), lost))

    def progress(self):
        return len(self.events)


class File:
    def __init__(self, arrays):
        self.arrays = arrays
        self.handle = type("Handle", (), {"lock": threading.RLock()})()


def appender(arrays, handlers=None):
    warnings: list[str] = []
    return Appender(File(arrays), handlers or {}, warnings.append), warnings


@pytest.mark.parametrize("in_file, missing, batches, values, lost", [
    # a fresh dataset: every point appended
    ([], 0, [Batch([1, 2]), Batch([3])], [1, 2, 3], {}),
    # resumed with 3 points in the file: the first 3 read again are skipped, across batches
    ([1, 2, 3], 0, [Batch([1, 2]), Batch([3, 4]), Batch([5])], [1, 2, 3, 4, 5], {}),
    # resumed: points trimmed before the first run read them count among those skipped
    ([None, None, 3], 2, [Batch([3, 4], lost=2)], [None, None, 3, 4], {"d": 2}),
    # trimmed points are grown over; later points stay at their index
    ([], 0, [Batch([1]), Batch([4, 5], lost=2)], [1, None, None, 4, 5], {"d": 2}),
    # resumed past trimmed points read again: skipped, not counted twice
    ([1, None, 3], 1, [Batch([1]), Batch([3, 4], lost=1)], [1, None, 3, 4], {"d": 1}),
    ([1, 2], 0, [Batch([1, 2, 3], lost=0), Batch([], lost=2)], [1, 2, 3, None, None], {"d": 2}),
])
def test_points_are_written_once_at_their_index(in_file, missing, batches, values, lost):
    array = Counted(in_file, missing)
    app, warnings = appender({"d": array})
    assert app.resumed_points == len(in_file)
    for batch in batches:
        app.append({"d": batch})
    assert (array.values, app.lost, app.broken, warnings) == (values, lost, {}, [])
    assert app.written() == app.lengths() == {"d": len(values)}


def test_a_broken_stream_is_said_with_the_point_it_stopped_at():
    array = Counted()
    app, warnings = appender({"d": array})
    app.append({"d": Batch([1, 2])})
    app.append({"d": Batch(None, error="points of 8 bytes, 4 described")})
    assert app.broken == {"d": "points of 8 bytes, 4 described"}
    assert warnings == ["d: points of 8 bytes, 4 described: not written from point 2 on"]
    assert array.values == [1, 2]


def test_events_go_to_their_kind_and_count_as_its_progress():
    kind = Kind()
    app, warnings = appender({"d": Counted()}, {"ev": kind})
    app.append({"ev": Batch([{"a": 1}], lost=1), "d": Batch(np.arange(3))})
    app.append({"ev": Batch(None)})
    assert kind.events == [([{"a": 1}], 1), ([], 0)]
    assert app.written() == {"d": 3, "ev": 2}
    assert app.lengths() == {"d": 3}
    assert (app.lost, warnings) == ({}, [])


def test_pieces_wait_for_room_and_stop_when_none_comes():
    from nexus_writer_service.writer.streaming import GaveUp

    array = Counted()
    asked: list[float] = []
    file = File({"d": array})
    file.make_room = lambda mb: asked.append(mb) or len(asked) < 3  # room twice, then none
    app = Appender(file, {}, lambda w: None)
    data = np.zeros(40, dtype="float64")  # 8 points of 8 bytes in a 64-byte chunk: 5 pieces
    with pytest.raises(GaveUp):
        app.append({"d": Batch(data)}, piecewise=True)
    assert array.length == 16  # two pieces written before the disk gave no more room
    assert len(asked) == 3
