"""Loading a scan as raw events: blissdata's stream plugins are never built.

blissdata's ``load_scan`` wraps each stream in its plugin's class (``lima``,
``lima2``, ``mosca``...), which fetches frames from detector servers. The writer
needs none of it (each kind reads ``info`` and the raw event stream), and building
them costs at every load: blissdata-lima2 imports tango and makes a ``DeviceProxy``
to the conductor for each lima2 stream (~0.15 s, and a logged traceback when the
conductor is not there); a plugin not installed logs a warning at each load.

``RawDataStore`` (what ``transport.connection.connect`` gives the writer) is
blissdata's ``DataStore`` whose ``load_scan`` has one change: every stream is an
``EventsOnly`` (its event stream, nothing else). blissdata has no option for it, so
this overrides the one method that wraps streams (``Scan._wrap_event_stream``, and loads with
``Scan._load``: private, in every blissdata 2.x, listed in ``blissdata_api.PRIVATE``); other
blissdata clients in the process are not affected.
"""

from __future__ import annotations

from .blissdata_api import DataStore, Scan


class EventsOnly:
    """A stream of any kind, seen as its raw events (``event_stream``)."""

    __slots__ = ("event_stream",)

    def __init__(self, event_stream):
        self.event_stream = event_stream

    @property
    def name(self) -> str:
        return self.event_stream.name

    @property
    def info(self) -> dict:
        return self.event_stream.info


class RawScan(Scan):
    def _wrap_event_stream(self, event_stream):
        return EventsOnly(event_stream)


class RawDataStore(DataStore):
    def load_scan(self, key):
        """The scan at ``key`` (blissdata's ``Scan``, state and info as usual), its streams raw."""
        return RawScan._load(self, key)


__all__ = ["EventsOnly", "RawDataStore"]
