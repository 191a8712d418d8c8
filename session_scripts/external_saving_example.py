"""Teaching example: save the scans of one BLISS session to HDF5 with the blissdata API.

A minimal external writer, for blissdata 2.x (BLISS >= 2.0). It is NOT the NeXus
writer (``NexusSessionWriter``): it only shows, in a few lines, how a separate process
follows a session's scans in Redis and saves them as the data arrives::

    python external_saving_example.py SESSION OUTPUT.h5 [--redis-url URL]

Redis: ``--redis-url``, else ``$REDIS_DATA_URL``, else asked from Beacon (``$BEACON_HOST``).
Stop it with Ctrl-C. It prints one JSON line per scan when the scan is saved
(``SAVED {"key": ..., "group": ..., ...}``).

The steps:

1. ``DataStore(url).get_next_scan(since=...)`` waits for each new scan (all sessions);
   ``load_scan`` opens it and we keep those of our session.
2. Each scan is handled in its own thread (:class:`ScanSaver`), so that a long scan does not
   delay the next one: wait until the scan is PREPARED (its streams are then declared).
3. A ``CursorGroup`` over the numeric streams returns, on each ``read()``, the new data of each
   stream; one HDF5 dataset per stream is resized and filled with each batch.
4. Lima streams hold no images, only where Lima saved them: once the scan is over, their
   file references are resolved with ``stream.get_references(...)``.
5. When the scan is CLOSED its ``scan_info`` is final: some of it is written with
   ``silx.io.dictdump.dicttonx``.
"""

import argparse
import json
import os
import signal
import threading

import h5py
import numpy as np
from blissdata.redis_engine.scan import ScanState
from blissdata.redis_engine.store import DataStore

try:  # blissdata >= 2.3 (BLISS 2.3, 2.4)
    from blissdata.exceptions import EndOfStream, NoScanAvailable
    from blissdata.streams import CursorGroup
except ImportError:  # blissdata 2.0 (BLISS 2.2): the same names, at their former places
    from blissdata.redis_engine.exceptions import EndOfStream, NoScanAvailable
    from blissdata.streams.base import CursorGroup
from silx.io.dictdump import dicttonx

#: parts of scan_info saved as metadata (see step 5)
METADATA_KEYS = ("title", "type", "npoints", "count_time", "start_time", "end_time",
                 "end_reason", "comments", "positioners", "instrument")
LIMA_PLUGINS = ("lima", "lima2")


def redis_url_default():
    """``$REDIS_DATA_URL``, else the data Redis that Beacon (``$BEACON_HOST``) names."""
    if os.environ.get("REDIS_DATA_URL"):
        return os.environ["REDIS_DATA_URL"]
    from blissdata.beacon.data import BeaconData

    return BeaconData().get_redis_data_db()


def nx_compatible(obj):
    """scan_info holds None, lists of dicts...: keep what HDF5 can store, JSON for the rest."""
    if isinstance(obj, dict):
        return {str(k): nx_compatible(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        if all(isinstance(v, (int, float, bool, str)) for v in obj) and obj:
            return list(obj) if len({type(v) for v in obj}) == 1 else json.dumps(obj)
        return json.dumps(obj, default=str)
    return obj


class ScanSaver(threading.Thread):
    """Saves one scan into its own group of the shared HDF5 file (step 2 to 5)."""

    def __init__(self, scan, h5file, lock):
        super().__init__(name=scan.key, daemon=True)
        self.scan, self.h5file, self.lock = scan, h5file, lock

    def create_group(self):
        """One group per scan: "<number>.1" (".2", ... if that number was seen already)."""
        with self.lock:
            i = 1
            while f"{self.scan.number}.{i}" in self.h5file:
                i += 1
            group = self.h5file.create_group(f"{self.scan.number}.{i}")
            group.attrs["NX_class"] = "NXentry"
            group.attrs["scan_key"] = self.scan.key
            group.create_group("measurement").attrs["NX_class"] = "NXcollection"
            return group

    def append(self, measurement, stream, data):
        """Step 3: resize the stream's dataset (created on its first batch) and add the batch."""
        data = np.asarray(data)
        with self.lock:
            if stream.name not in measurement:
                measurement.create_dataset(stream.name, shape=(0,) + data.shape[1:], dtype=data.dtype,
                                           maxshape=(None,) + data.shape[1:], chunks=True)
            dset = measurement[stream.name]
            n = dset.shape[0]
            dset.resize(n + len(data), axis=0)
            dset[n:] = data

    def run(self):
        scan = self.scan
        # step 2: streams are declared when the scan is PREPARED
        while scan.state < ScanState.PREPARED:
            scan.update()
        group = self.create_group()
        measurement = group["measurement"]
        numeric = [s for s in scan.streams.values() if s.plugin is None]
        lima = [s for s in scan.streams.values() if s.plugin in LIMA_PLUGINS]

        # step 3: follow the numeric streams until every one of them has ended
        cursors = CursorGroup(numeric)
        while True:
            try:
                views = cursors.read(timeout=1)
            except EndOfStream:
                break
            for stream, view in views.items():
                self.append(measurement, stream, view.get_data())
            with self.lock:
                self.h5file.flush()

        # the scan ends after its streams: wait for its final scan_info
        while scan.state < ScanState.CLOSED:
            scan.update()

        with self.lock:
            # step 4: images stay in Lima's files; save where they are
            for stream in lima:
                refs = stream.get_references(slice(0, len(stream))) if len(stream) else []
                lima_group = measurement.create_group(stream.name)
                lima_group["file_path"] = [r.file_path for r in refs]
                lima_group["data_path"] = [r.data_path or "" for r in refs]
                lima_group["index"] = np.array([r.index for r in refs], dtype=np.int64)
            # step 5: selected metadata from the final scan_info
            info = {k: scan.info[k] for k in METADATA_KEYS if scan.info.get(k) is not None}
            dicttonx(nx_compatible(info), self.h5file, h5path=f"{group.name}/scan_info", update_mode="add")
            self.h5file.flush()
        print("SAVED " + json.dumps({"key": scan.key, "group": group.name, "number": scan.number,
                                     "name": scan.name, "end_reason": scan.info.get("end_reason")}),
              flush=True)


def listen(session, output, redis_url):
    """Step 1: wait for each new scan of ``session``, hand it to a :class:`ScanSaver`."""
    # Ctrl-C (or kill) asks the loop to stop; a KeyboardInterrupt could land anywhere,
    # e.g. inside h5py, and leave the file unclosed
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    data_store = DataStore(redis_url)
    since = data_store.get_last_scan_timetag()  # from now on, without missing one
    lock = threading.Lock()
    savers = []
    with h5py.File(output, "a") as h5file:
        print(f"LISTENING {json.dumps({'session': session, 'output': output})}", flush=True)
        while not stop.is_set():
            try:
                since, key = data_store.get_next_scan(since=since, timeout=1)
            except NoScanAvailable:
                continue  # wake up once a second to see a stop request
            scan = data_store.load_scan(key)
            if scan.session != session:
                continue
            saver = ScanSaver(scan, h5file, lock)
            saver.start()
            savers.append(saver)
        for saver in savers:  # let the scans under way finish (a few seconds at most)
            saver.join(10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session", help="BLISS session name")
    parser.add_argument("output", help="HDF5 file (created, or appended to)")
    parser.add_argument("--redis-url", default=None, help="blissdata Redis URL")
    args = parser.parse_args(argv)
    listen(args.session, os.path.abspath(args.output), args.redis_url or redis_url_default())


if __name__ == "__main__":
    main()
