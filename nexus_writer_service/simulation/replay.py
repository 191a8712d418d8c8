"""Publish recorded scans into Redis the way BLISS does.

The order of calls is BLISS's (blissdata publisher protocol): create the scan
with its identity and first info, create the streams, PREPARED info, start,
send data in batches, seal (``stop`` seals when the scan stopped normally),
final info, close. Aborted and failed scans skip STOPPED, as in BLISS.

Streams of plugins outside blissdata (lima2, mosca, ...) are published as the
plugin's definition says (same info and encoding in Redis) through a plain
stream: BLISS makes them with the plugin's class, whose constructor may talk to
the detector's server (Lima2's conductor), which a replayer does not have.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Iterable

import numpy as np

from ..transport.blissdata_api import DataStore, JsonStreamEncoder, NumericStreamEncoder, Scan, Stream, StreamDefinition
from .recording import ScanRecording

#: plugins shipped with blissdata: their stream classes need nothing but Redis
BLISSDATA_PLUGINS = frozenset({"lima", "hdf5_fallback", "scan_sequence"})


def _definition(stream) -> StreamDefinition:
    # The recorded info is reused verbatim (file_path/data_path/plugin...), so the
    # reader sees the same stream classes as with real BLISS.
    if stream.is_numeric:
        enc = stream.encoding
        encoder = NumericStreamEncoder(enc["dtype_str"], tuple(enc["shape"]))
    elif stream.encoding.get("type") == "json":
        encoder = JsonStreamEncoder()
    else:
        raise ValueError(f"cannot replay stream encoding {stream.encoding}")
    return StreamDefinition(stream.name, dict(stream.info), encoder)


def needs_stand_in(info: dict) -> bool:
    """True for streams whose plugin class the publisher does not instantiate."""
    plugin = info.get("plugin")
    return plugin is not None and plugin not in BLISSDATA_PLUGINS


def _publishing(scan):
    """The publisher's scan object wraps stand-in streams as plain streams.

    blissdata's ``create_stream``/``get_writer_stream`` do everything else (the stream
    model in the scan, the Redis stream), and the state changes no longer try the
    plugin (and its server) either. Only this scan object is affected: readers in the
    same process still load these streams with the plugins installed (or missing).
    """
    plugin_wrap = scan._wrap_event_stream

    def wrap(event_stream):
        return Stream(event_stream) if needs_stand_in(event_stream.info) else plugin_wrap(event_stream)

    scan._wrap_event_stream = wrap  # an instance attribute shadows the method
    return scan


class ScanPublisher:
    """One recorded scan, published step by step (a sequence needs the steps)."""

    def __init__(self, data_store: DataStore, rec: ScanRecording, *, batch_size: int = 10,
                 interval: float = 0.0, info_overrides: dict | None = None):
        self.ds = data_store
        self.rec = rec
        self.batch_size = max(1, batch_size)
        self.interval = interval
        self.info_overrides = info_overrides or {}
        self.scan = None
        self.streams: dict = {}

    @property
    def key(self) -> str:
        return self.scan.key

    def _info(self, info: dict) -> dict:
        return {**info, **self.info_overrides}

    def create(self) -> "ScanPublisher":
        scan = self.ds.create_scan(dict(self.rec.identity), info=self._info(self.rec.info_created))
        self.scan = _publishing(scan)
        for stream in self.rec.streams:
            self.streams[stream.name] = self.scan.create_stream(_definition(stream))
        return self

    def prepare(self) -> "ScanPublisher":
        self.scan.info = self._info(self.rec.info_prepared)
        self.scan.prepare()
        return self

    def start(self) -> "ScanPublisher":
        self.scan.start()
        return self

    def data_streams(self) -> list:
        """Streams sent while points are taken: numeric ones, lima statuses and streams with a
        schedule (detector progress, JSON events); not sequence references."""
        return [s for s in self.rec.streams
                if s.is_numeric or s.info.get("plugin") == "lima" or s.points is not None]

    def send_data(self, stop_after: int | None = None, start_at: int = 0) -> None:
        """Send points [start_at, stop_after) of every data stream in batches, interleaved like a live scan.

        A stream with a schedule (``StreamRecording.points``) sends the events due with
        those points, so progress events (repeats included) arrive as the points do.
        """
        streams = self.data_streams()
        longest = max((s.npoints for s in streams), default=0)
        if stop_after is not None:
            longest = min(longest, stop_after)
        for start in range(start_at, longest, self.batch_size):
            for s in streams:
                chunk = s.at_points(start, min(start + self.batch_size, longest))
                if len(chunk):
                    if not s.is_numeric:  # JSON events (lima/mosca statuses, JSON streams)
                        for event in chunk:
                            self.streams[s.name].send(event)
                    elif isinstance(chunk, list):  # variable-length points
                        for point in chunk:
                            self.streams[s.name].send(np.asarray(point))
                    elif s.points is not None:  # progress ticks: one event per send, as BLISS emits them
                        for event in chunk:
                            self.streams[s.name].send(event)
                    else:
                        self.streams[s.name].send(chunk)
            if self.interval:
                time.sleep(self.interval)

    def join(self) -> "ScanPublisher":
        """Wait until everything sent so far is in Redis (blissdata sends from a thread)."""
        for stream in self.streams.values():
            stream.join()
        return self

    def send_json(self, name: str, events: Iterable[dict]) -> None:
        for event in events:
            self.streams[name].send(event)

    def end(self) -> None:
        """Seal (through STOPPED when the scan stopped normally), run the recording's
        ``before_close`` callbacks (detector files written after the acquisition), close."""
        if "STOPPED" in self.rec.states:
            self.scan.stop()
        else:
            for stream in self.streams.values():
                if not stream.is_sealed():
                    stream.seal()
        for callback in self.rec.before_close:
            callback()
        self.scan.info = self._info(self.rec.info_final)
        self.scan.close()

    def abandon(self) -> None:
        """The publisher dies: its streams stop without being sealed, the scan is never closed.

        blissdata's sink threads are not daemons and one that lost its connection
        never stops, hence the daemon thread and the time limit.
        """
        def stop():
            for stream in self.streams.values():
                try:
                    stream.event_stream._sink.stop()
                except Exception:
                    pass

        stopper = threading.Thread(target=stop, daemon=True)
        stopper.start()
        stopper.join(5)

    def resume(self, data_store: DataStore) -> "ScanPublisher":
        """Go on publishing through a new connection (after Redis restarted)."""
        self.abandon()
        self.ds = data_store
        # blissdata has no public read-write load; _load_rw is what it uses itself
        self.scan = _publishing(Scan._load_rw(data_store, self.scan.key))
        self.scan.json_info = json.dumps(self.scan.info)  # what blissdata compares at the next state
        self.streams = {name: self.scan.get_writer_stream(name) for name in self.streams}
        for name, stream in self.streams.items():
            self.scan._writer_streams[name] = stream
            # blissdata opens a writer stream at index 0: go on after what Redis holds (else
            # every later point is refused: "index discrepancy"), as BLISS's own writer would
            events = getattr(stream, "event_stream", stream)
            events._write_index = len(events)
        return self

    def run(self) -> str:
        self.create().prepare().start()
        self.send_data()
        self.end()
        return self.key


def publish(data_store: DataStore, rec: ScanRecording, **kwargs) -> str:
    """Publish one scan from start to end; returns its Redis key."""
    return ScanPublisher(data_store, rec, **kwargs).run()


def publish_sequence(data_store: DataStore, parent: ScanRecording,
                     children: list[ScanRecording], **kwargs) -> tuple[str, list[str]]:
    """A BLISS ``Sequence``: the parent announces each child in its SUBSCANS stream.

    Children carry ``info["group"] = <parent key>``, and the parent closes after them.
    """
    seq = ScanPublisher(data_store, parent, **kwargs).create().prepare().start()
    json_streams = [s.name for s in parent.streams if not s.is_numeric]
    child_keys = []
    for child in children:
        pub = ScanPublisher(data_store, child, info_overrides={"group": seq.key}, **kwargs).create()
        for name in json_streams:
            seq.send_json(name, [{"key": pub.key, "scan_number": child.number}])
        pub.prepare().start()
        pub.send_data()
        pub.end()
        child_keys.append(pub.key)
    seq.send_data()
    seq.end()
    return seq.key, child_keys
