"""Publish recorded scans into Redis the way BLISS does.

The order of calls is BLISS's (blissdata publisher protocol): create the scan
with its identity and first info, create the streams, PREPARED info, start,
send data in batches, seal (``stop`` seals when the scan stopped normally),
final info, close. Aborted and failed scans skip STOPPED, as in BLISS.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Iterable

import numpy as np
from blissdata.redis_engine.store import DataStore
from blissdata.streams import StreamDefinition
from blissdata.streams.encoding.json import JsonStreamEncoder
from blissdata.streams.encoding.numeric import NumericStreamEncoder

from .recording import ScanRecording


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
        self.scan = self.ds.create_scan(dict(self.rec.identity), info=self._info(self.rec.info_created))
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
        """Streams sent point by point: numeric ones and lima statuses (not sequence references)."""
        return [s for s in self.rec.streams if s.is_numeric or s.info.get("plugin") == "lima"]

    def send_data(self, stop_after: int | None = None, start_at: int = 0) -> None:
        """Send points [start_at, stop_after) of every data stream in batches, interleaved like a live scan."""
        streams = self.data_streams()
        longest = max((len(s.data) for s in streams), default=0)
        if stop_after is not None:
            longest = min(longest, stop_after)
        for start in range(start_at, longest, self.batch_size):
            for s in streams:
                chunk = s.data[start:start + self.batch_size]
                if len(chunk):
                    if not s.is_numeric:  # JSON events (lima statuses)
                        for event in chunk:
                            self.streams[s.name].send(event)
                    elif isinstance(chunk, list):  # variable-length points
                        for point in chunk:
                            self.streams[s.name].send(np.asarray(point))
                    else:
                        self.streams[s.name].send(chunk)
            if self.interval:
                time.sleep(self.interval)

    def send_json(self, name: str, events: Iterable[dict]) -> None:
        for event in events:
            self.streams[name].send(event)

    def end(self) -> None:
        if "STOPPED" in self.rec.states:
            self.scan.stop()
        else:
            for stream in self.streams.values():
                if not stream.is_sealed():
                    stream.seal()
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
        from blissdata.redis_engine.scan import Scan

        self.abandon()
        self.ds = data_store
        # blissdata has no public read-write load; _load_rw is what it uses itself
        self.scan = Scan._load_rw(data_store, self.scan.key)
        self.scan.json_info = json.dumps(self.scan.info)  # what blissdata compares at the next state
        self.streams = {name: self.scan.get_writer_stream(name) for name in self.streams}
        for name, stream in self.streams.items():
            self.scan._writer_streams[name] = stream
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
