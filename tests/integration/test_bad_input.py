"""Bad input from BLISS, Redis or the file system, replayed through a real Redis.

Every test checks four things: the session writer survives (a normal scan
published afterwards is still written, SUCCEEDED), the bad scan's state
(status, error, warnings) tells what happened, the log says it in a clear line,
and the file holds what it should (values, fill values, ``writer/status``).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import redis
from blissdata.redis_engine.store import DataStore

from conftest import read_file
from nexus_writer_service.nxnodes import NAME_RE
from nexus_writer_service.simulation.recording import StreamRecording, scaled
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.blissdata_api import EventStream, NumericStreamEncoder, Stream

DIODE1 = "simulation_diode_sampling_controller:diode1"
DIODE2 = "simulation_diode_sampling_controller:diode2"


# -- helpers -----------------------------------------------------------------
def _scan_lines(harness, number: int, name: str = "ascan") -> list[str]:
    """Log lines of one scan (the writer prefixes them with session and scan)."""
    tag = f"[{harness.session}] [{number} {name}]"
    return [line for line in harness.caplog.text.splitlines() if tag in line]


def _status_lines(harness, number: int, end: str) -> list[str]:
    """The scan's log lines that end with its final status ("N.1: SUCCEEDED (k points, ...)")."""
    return [line for line in _scan_lines(harness, number) if line.endswith(end)]


def _said(lines: list[str], level: str) -> list[str]:
    """The messages of the scan's log lines at ``level``, without their prefixes."""
    return [line.split("] ", 2)[2] for line in lines if line.split()[0] == level]


def _state(harness, key: str, timeout: float = 15):
    """The scan's final state, once the listener has taken the scan at all.

    ``harness.state`` waits for the scans the listener already dispatched; a
    listener that is reconnecting (test g) takes a new scan up to ~1 s late.
    """
    deadline = time.monotonic() + timeout
    while key not in harness.writer.scans and time.monotonic() < deadline:
        time.sleep(0.05)
    assert key in harness.writer.scans, f"the writer never took scan {key}"
    return harness.state(key)


def _assert_still_writing(harness, number: int) -> None:
    """The writer survived: a normal scan published now is written completely."""
    assert harness.thread.is_alive(), "the session writer thread died"
    rec = harness.recording("03_ascan", number=number)
    state = _state(harness, harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    assert state.error is None and state.warnings == []
    with read_file(state.file) as f:
        entry = f[f"{number}.1"]
        assert entry["writer/status"][()] == b"SUCCEEDED"
        for name, stream in (("diode1", DIODE1), ("diode2", DIODE2), ("robx", "axis:robx")):
            assert np.array_equal(entry["measurement"][name][()], rec.stream(stream).data)
    assert len(_status_lines(harness, number, f"{number}.1: SUCCEEDED ({len(rec.stream(DIODE1).data)} points, "
                                              "end_reason SUCCESS)")) == 1, _scan_lines(harness, number)
    assert harness.thread.is_alive()


def _edit_info(rec, edit) -> None:
    """Apply ``edit(info) -> info`` to the scan info of every state."""
    rec.info_created = edit(copy.deepcopy(rec.info_created))
    rec.info_prepared = edit(copy.deepcopy(rec.info_prepared))
    rec.info_final = edit(copy.deepcopy(rec.info_final))


def _retarget(rec, path: Path) -> None:
    """The same scan, saved by BLISS in another file."""
    rec.identity["path"] = str(path)

    def edit(info):
        info["filename"] = str(path)
        return info

    _edit_info(rec, edit)
    for s in rec.streams:
        if "file_path" in s.info:
            s.info["file_path"] = str(path)


def _datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and not obj.is_virtual:
            out[obj.name] = obj

    group.visititems(visit)
    return out


def _holding(f: h5py.File, entries: list[str], data: np.ndarray) -> list[str]:
    """Paths of the datasets of ``entries`` that hold exactly ``data``."""
    found = []
    for entry in entries:
        for path, dset in _datasets(f[entry]).items():
            if dset.shape == data.shape and dset.dtype.kind == data.dtype.kind \
                    and np.array_equal(dset[()], data, equal_nan=True):
                found.append(path)
    return found


def _files(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}


# -- a. broken scan_info -----------------------------------------------------
def _chain_not_dict(info):
    info["acquisition_chain"] = ["axis"]
    return info


def _chain_str(info):
    info["acquisition_chain"] = "axis"
    return info


def _chain_values_not_dict(info):
    info["acquisition_chain"] = {"axis": "garbage"}
    return info


def _channels_list(info):
    info["channels"] = list(info["channels"])
    return info


def _channel_entries_str(info):
    info["channels"] = {name: "garbage" for name in info["channels"]}
    return info


def _devices_wrong(info):
    info["devices"] = ["garbage"]
    return info


def _positioners_wrong(info):
    info["positioners"] = {"positioners_start": ["robx", 0.0], "positioners_units": "mm"}
    return info


def _plots_wrong(info):
    info["plots"] = "curve"
    info["title"] = 42
    info["npoints"] = "six"
    info["count_time"] = "0.01"
    info["scan_meta_categories"] = "technique"
    info["comments"] = "a comment"
    info["start_time"] = None
    return info


def _minimal(info):
    keep = ("name", "scan_nb", "session_name", "save", "filename")
    return {k: info[k] for k in keep if k in info}


BROKEN_INFO = {
    # variant: (edit, what the warning names). Every variant must be SUCCEEDED: the data
    # are whole (scan_info only describes them); what cannot be understood is ignored,
    # with a warning naming the key (optional keys simply missing need none).
    "acquisition_chain_list": (_chain_not_dict, "scan_info['acquisition_chain'] is a list"),
    "acquisition_chain_str": (_chain_str, "scan_info['acquisition_chain'] is a str"),
    "acquisition_chain_values_not_dict": (_chain_values_not_dict, "scan_info['acquisition_chain']['axis']"),
    "channels_list": (_channels_list, "scan_info['channels'] is a list"),
    "channel_entries_str": (_channel_entries_str, "scan_info['channels']['axis:robx']"),
    "devices_list": (_devices_wrong, "scan_info['devices']"),
    "positioners_wrong_types": (_positioners_wrong, "scan_info['positioners']['positioners_start']"),
    "scalars_wrong_types": (_plots_wrong, "scan_info['npoints'] is not an integer"),
    "missing_most_keys": (_minimal, None),
}

@pytest.mark.parametrize("variant", list(BROKEN_INFO))
def test_broken_scan_info(harness, variant):
    edit, named = BROKEN_INFO[variant]
    rec = harness.recording("03_ascan", number=31)
    _edit_info(rec, edit)
    state = _state(harness, harness.publish(rec))
    lines = _scan_lines(harness, 31)
    assert state.status == "SUCCEEDED" and state.error is None, state
    if named is not None:
        assert any(named in w and "ignored" in w for w in state.warnings), state.warnings
        assert any("WARNING" in line and named in line for line in lines), lines
    # written with what can be understood: every published point is in the file
    with read_file(state.file) as f:
        assert state.entries and all(f[e]["writer/status"][()] == b"SUCCEEDED" for e in state.entries)
        for stream in rec.streams:
            assert _holding(f, state.entries, np.asarray(stream.data)), stream.name
        if named is not None:
            notes = [w.decode() for e in state.entries for w in np.atleast_1d(f[e]["writer/warnings"][()])]
            assert any(named in w for w in notes), notes
    npoints = len(rec.stream(DIODE1).data)
    end_reason = rec.info_final.get("end_reason", "?")  # "?" when the edit dropped it
    assert len(_status_lines(harness, 31, f"{', '.join(state.entries)}: SUCCEEDED ({npoints} points, "
                                          f"end_reason {end_reason})")) == 1, lines
    _assert_still_writing(harness, 32)


def test_strings_with_nul_characters_are_written_escaped(harness):
    # HDF5 strings end at a NUL; a user's title or metadata can hold one (the fuzz test found it)
    def edit(info):
        info["title"] = "before\x00after"
        info["instrument"] = {**info.get("instrument", {}), "note": "a\x00b"}
        return info

    rec = harness.recording("03_ascan", number=33)
    _edit_info(rec, edit)
    state = _state(harness, harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        entry = f[state.entries[0]]
        assert entry["title"][()].decode() == "before\\x00after"
        assert entry["instrument/note"][()].decode() == "a\\x00b"


# -- b. a stream of an unknown kind ------------------------------------------
def _add_future_stream(pub: ScanPublisher, name: str, info: dict, encoder) -> Stream:
    """A stream made by a newer publisher whose blissdata plugin we do not have.

    blissdata refuses to *create* a stream of a missing plugin, so it is created
    the way ``Scan.create_stream`` does, minus the plugin check.
    """
    model = pub.ds._stream_model(encoding=encoder.info(), info=info)
    event_stream = EventStream.create(pub.ds, name, model)
    pub.scan._model.data_streams[name] = model
    stream = Stream(event_stream)
    pub.scan._writer_streams[name] = stream  # sealed by scan.stop() like the others
    return stream


FUTURE = "future_ctrl:thing"


def _publish_with_future_stream(harness, number: int):
    """03_ascan plus a declared 0D channel whose stream needs 'some_future_plugin'."""
    rec = harness.recording("03_ascan", number=number)

    def declare(info):
        info["channels"][FUTURE] = {"device": "0:future_ctrl", "display_name": "thing", "dim": 0}
        info["devices"]["0:future_ctrl"] = {"name": "future_ctrl", "channels": [FUTURE]}
        chain = info["acquisition_chain"]["axis"]
        chain["scalars"] = list(chain["scalars"]) + [FUTURE]
        chain["devices"] = list(chain["devices"]) + ["0:future_ctrl"]
        return info

    _edit_info(rec, declare)
    pub = ScanPublisher(harness.ds, rec).create()
    future = _add_future_stream(pub, FUTURE, {"plugin": "some_future_plugin"},
                                NumericStreamEncoder("float64"))
    pub.prepare().start()
    pub.send_data()
    future.send(np.arange(6, dtype=float))
    pub.end()
    return rec, _state(harness, pub.key)


def test_stream_of_unknown_plugin_is_reported_not_dropped(harness):
    rec, state = _publish_with_future_stream(harness, 41)
    assert state.status == "INCOMPLETE", state  # published data not in the file
    unknown = "blissdata plugin 'some_future_plugin': stream kind not written by this writer version"
    assert state.warnings == [f"stream '{FUTURE}' not written: {unknown}",
                              f"stream '{FUTURE}' published but not written ({unknown})"], state.warnings
    lines = _scan_lines(harness, 41)
    assert _said(lines, "WARNING") == [*state.warnings, "41.1: INCOMPLETE (6 points, end_reason SUCCESS)"], lines
    with read_file(state.file) as f:
        entry = f["41.1"]
        assert entry["writer/status"][()] == b"INCOMPLETE"
        notes = [w.decode() for w in np.atleast_1d(entry["writer/warnings"][()])]
        assert notes == state.warnings
        for short, stream in (("diode1", DIODE1), ("diode2", DIODE2), ("robx", "axis:robx")):
            assert np.array_equal(entry["measurement"][short][()], rec.stream(stream).data)
        assert "thing" not in entry["measurement"]
    _assert_still_writing(harness, 42)


def test_stream_of_unknown_plugin_warning_names_the_plugin(harness):
    """The warning should say *why* the stream cannot be read: its plugin is missing."""
    _, state = _publish_with_future_stream(harness, 43)
    assert state.status == "INCOMPLETE", state  # published data not in the file
    warned = [w for w in state.warnings if FUTURE in w]
    assert warned and "some_future_plugin" in warned[0], warned


# -- c. channel names that are paths -----------------------------------------
EVIL = {DIODE1: "ctrl:../../evil", DIODE2: "ctrl:a/b c"}


def _rename_channels(rec, renames: dict[str, str]) -> None:
    def rename(obj):
        if isinstance(obj, str):
            return renames.get(obj, obj)
        if isinstance(obj, list):
            return [rename(x) for x in obj]
        if isinstance(obj, dict):
            return {rename(k): rename(v) for k, v in obj.items()}
        return obj

    def edit(info):
        info = rename(info)
        for new in renames.values():
            info["channels"][new]["display_name"] = new.split(":", 1)[1]
        return info

    _edit_info(rec, edit)
    for s in rec.streams:
        if s.name in renames:
            s.name = renames[s.name]
            short = s.name.split(":", 1)[1]
            s.info["data_path"] = f"{rec.number}.1/instrument/{short}/data"


def test_channel_names_with_path_separators_stay_inside(harness, tmp_path):
    before = _files(tmp_path)
    rec = harness.recording("03_ascan", number=51)
    _rename_channels(rec, EVIL)
    state = _state(harness, harness.publish(rec))
    assert state.status == "SUCCEEDED", state

    # nothing outside the target folder, no stray file anywhere
    folder = Path(state.file).parent
    assert folder == tmp_path / harness.session
    created = _files(tmp_path) - before
    assert created == {harness.session, f"{harness.session}/data.h5"}, created
    assert not list(tmp_path.parent.glob("evil*")) and not list(tmp_path.glob("**/evil*"))

    with read_file(state.file) as f:
        entry = f["51.1"]
        assert entry["writer/status"][()] == b"SUCCEEDED"
        # every name in the file is a NeXus name: no '..', '/', spaces
        names = []
        entry.visit_links(lambda n: names.append(n))  # soft links too (measurement/...)
        assert "measurement/evil" in names and "instrument/a_b_c/data" in names
        for n in names:
            for part in n.split("/"):
                assert NAME_RE.match(part), n
        assert set(f) == {"51.1"}  # nothing climbed to the root
        # the data are there, under sanitized names
        for new in EVIL.values():
            found = _holding(f, ["51.1"], rec.stream(new).data)
            assert found, new
            assert all(" " not in p and ".." not in p for p in found)
        assert np.array_equal(entry["measurement/evil"][()], rec.stream(EVIL[DIODE1]).data)
        assert np.array_equal(entry["measurement/a_b_c"][()], rec.stream(EVIL[DIODE2]).data)
    # the refused data_path is said
    assert state.warnings == [
        f"{new}: announced data_path '51.1/instrument/{new.partition(':')[2]}/data' is not usable; written elsewhere"
        for new in EVIL.values()], state.warnings
    _assert_still_writing(harness, 52)


# -- d. NaN and inf ------------------------------------------------------------
def test_nan_and_inf_values_are_kept(harness):
    rec = harness.recording("03_ascan", number=61)
    values = np.array([1.0, np.nan, np.inf, -np.inf, np.nan, 2.5])
    rec.stream(DIODE1).data = values
    rec.stream(DIODE2).data = np.full(6, np.nan)
    state = _state(harness, harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    assert state.warnings == []
    assert len(_status_lines(harness, 61, "] 61.1: SUCCEEDED (6 points, end_reason SUCCESS)")) == 1, \
        _scan_lines(harness, 61)
    with read_file(state.file) as f:
        entry = f["61.1"]
        d1 = entry["measurement/diode1"][()]
        assert d1.dtype == np.float64
        assert np.array_equal(d1, values, equal_nan=True)
        assert np.isposinf(d1[2]) and np.isneginf(d1[3])
        assert np.isnan(entry["measurement/diode2"][()]).all()
        assert entry["measurement/diode2"].shape == (6,)
        assert entry["writer/status"][()] == b"SUCCEEDED"
        assert int(entry["writer/points/diode1"][()]) == 6
    _assert_still_writing(harness, 62)


# -- e. ragged spectra -------------------------------------------------------
@pytest.mark.parametrize("dtype,fill", [("float64", np.nan), ("int32", 0)])
def test_ragged_spectra_are_padded_with_the_fill_value(harness, dtype, fill):
    rec = harness.recording("03_ascan", number=71)
    name = "ragged_ctrl:spectrum"
    lengths = [3, 5, 2, 7, 1, 4]
    points = [(np.arange(n) + 10 * i + 1).astype(dtype) for i, n in enumerate(lengths)]
    rec.streams.append(StreamRecording(
        name, {}, {"type": "numeric", "dtype_str": np.dtype(dtype).str, "shape": [-1]}, points))

    def declare(info):
        info["channels"][name] = {"device": "0:ragged_ctrl", "display_name": "spectrum", "dim": 1}
        info["devices"]["0:ragged_ctrl"] = {"name": "ragged_ctrl", "channels": [name]}
        chain = info["acquisition_chain"]["axis"]
        chain["spectra"] = [name]
        chain["devices"] = list(chain["devices"]) + ["0:ragged_ctrl"]
        return info

    _edit_info(rec, declare)
    # one point per batch: the dataset grows in width and pads in turn
    key = ScanPublisher(harness.ds, rec, batch_size=1, interval=0.05).run()
    state = _state(harness, key)
    assert state.status == "SUCCEEDED", state
    assert state.written[name] == 6
    with read_file(state.file) as f:
        entry = f["71.1"]
        dset = entry["measurement/spectrum"]
        assert dset.dtype == np.dtype(dtype)
        assert dset.shape == (6, max(lengths))
        assert "fill_value" in dset.attrs
        assert np.array_equal(dset.attrs["fill_value"], fill, equal_nan=True)
        assert np.array_equal(dset.fillvalue, fill, equal_nan=True)
        data = dset[()]
        for i, point in enumerate(points):
            assert np.array_equal(data[i, :len(point)], point), i
            assert np.array_equal(data[i, len(point):], np.full(max(lengths) - len(point), fill, dtype),
                                  equal_nan=True), i
        assert int(entry["writer/points/spectrum"][()]) == 6
        assert entry["writer/status"][()] == b"SUCCEEDED"
        # the other channels are unaffected
        assert np.array_equal(entry["measurement/diode1"][()], rec.stream(DIODE1).data)
    _assert_still_writing(harness, 72)


# -- f. a publisher that dies --------------------------------------------------
def test_stalled_scan_is_given_up_incomplete_with_its_partial_data(make_harness):
    harness = make_harness(stall_timeout=2)
    rec = harness.recording("03_ascan", number=81)
    pub = ScanPublisher(harness.ds, rec, batch_size=3).create().prepare().start()
    try:
        pub.send_data(stop_after=3)  # then the publisher "dies": no seal, no close
        t0 = time.monotonic()
        state = _state(harness, pub.key)
    finally:
        pub.abandon()
    assert time.monotonic() - t0 < 15
    assert state.status == "INCOMPLETE", state
    assert state.error is None
    warnings = ["no data and no state change for 2 s: given up",
                "scan_info has no end_time: the writer's clock at the end is written",
                "the scan was never closed by its publisher"]
    assert state.warnings == warnings
    lines = _scan_lines(harness, 81)
    given_up = _status_lines(harness, 81, "] no data and no state change for 2 s: given up")
    assert [line.split()[0] for line in given_up] == ["WARNING"], lines
    assert len(_status_lines(harness, 81, "81.1: INCOMPLETE (3 points, end_reason ?)")) == 1, lines
    with read_file(state.file) as f:
        entry = f["81.1"]
        assert entry["writer/status"][()] == b"INCOMPLETE"
        for short, stream in (("diode1", DIODE1), ("diode2", DIODE2), ("robx", "axis:robx")):
            assert np.array_equal(entry["measurement"][short][()], rec.stream(stream).data[:3])
        notes = [w.decode() for w in np.atleast_1d(entry["writer/warnings"][()])]
        assert notes == warnings
    _assert_still_writing(harness, 82)


# -- g. Redis drops every client -----------------------------------------------
PUBLISHER = "nxw_test_publisher"


def _kill_clients_but_publisher(admin: redis.Redis) -> int:
    """``CLIENT KILL TYPE normal SKIPME yes``, sparing the publisher's connections.

    blissdata's publisher-side RedisSink does not survive losing its connection:
    its send thread dies on the ConnectionError without telling ``stop()``, which
    then waits forever (``Scan.stop`` -> ``EventStream.seal``). That is BLISS's
    side, not the writer's, so the publisher (connections named PUBLISHER) is spared.
    """
    me = admin.client_id()
    killed = 0
    for client in admin.client_list(_type="normal"):
        if client["name"] != PUBLISHER and int(client["id"]) != me:
            killed += admin.client_kill_filter(_id=client["id"])
    return killed


def test_redis_disconnect_during_a_scan(make_harness):
    harness = make_harness(stall_timeout=5)
    admin = redis.Redis.from_url(harness.url)
    publisher_ds = DataStore(f"{harness.url}?client_name={PUBLISHER}")
    rec = scaled(harness.recording("03_ascan", number=91), npoints=30)
    pub = ScanPublisher(publisher_ds, rec, batch_size=1, interval=0.1)  # ~3 s of data
    errors = []

    def run():
        try:
            pub.run()
        except Exception as e:  # the publisher is not under test: note and go on
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    killed = 0
    try:
        for _ in range(3):  # several kills while points arrive
            time.sleep(0.7)
            killed += _kill_clients_but_publisher(admin)
        thread.join(30)
    finally:
        if errors or thread.is_alive():
            pub.abandon()
    assert killed >= 3  # at least the listener's blocking read, each time
    assert not errors, errors
    state = _state(harness, pub.key)
    lines = _scan_lines(harness, 91)
    # the publisher was spared: every point is in Redis, and the writer's cursors kept their
    # places through the kills, so every point is in the file
    assert (state.status, state.warnings) == ("SUCCEEDED", []), state
    with read_file(state.file) as f:
        entry = f["91.1"]
        assert entry["writer/status"][()] == b"SUCCEEDED"
        for short, stream in (("diode1", DIODE1), ("diode2", DIODE2), ("robx", "axis:robx")):
            assert np.array_equal(entry["measurement"][short][()], rec.stream(stream).data)
    assert len([line for line in lines if "91.1: SUCCEEDED (30 points, end_reason SUCCESS)" in line]) == 1, lines
    # the fault reached the writer, and its log says so
    text = harness.caplog.text
    assert f"[{harness.session}] Redis unreachable" in text
    # the listener itself keeps listening (its blocking read was killed too)
    _assert_still_writing(harness, 92)
    assert f"[{harness.session}] Redis is back" in harness.caplog.text
    admin.close()


# -- h. the target file is locked by another process ---------------------------
LOCKER = """
import sys, time, h5py
with h5py.File(sys.argv[1], "a") as f:
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_locked_target_file_waits_for_the_lock_and_writes_everything(make_harness):
    """Another process holds the file (a viewer, a writer): the scan waits, its data in
    Redis, says who holds the file, and is written whole once it is free; other scans go on."""
    harness = make_harness(lock_timeout=1, storage_check_period=0.2)
    rec = harness.recording("03_ascan", number=101)
    path = Path(rec.identity["path"])
    path.parent.mkdir(parents=True)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), "4"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        key = harness.publish(rec)
        # meanwhile a scan to another file is written at once
        other = harness.recording("03_ascan", number=102)
        _retarget(other, path.parent / "other.h5")
        other_key = harness.publish(other)
        deadline = time.monotonic() + 15
        while getattr(harness.writer.scans.get(other_key), "status", None) != "SUCCEEDED":
            assert time.monotonic() < deadline, harness.writer.scans.get(other_key)
            time.sleep(0.05)
        assert harness.writer.scans[other_key].file == str(path.parent / "other.h5")
        assert locker.poll() is None, "the locker exited before the other scan was written"
        state = _state(harness, key, timeout=30)
    finally:
        locker.wait(30)
    assert state.status == "SUCCEEDED", state
    assert len(state.warnings) == 1, state.warnings
    assert re.fullmatch(rf"{re.escape(str(path))} is locked by pid {locker.pid} \(\S+\) \(a reader holding HDF5's "
                        r"file lock\): the scan is written once the reader lets it go; the data wait in Redis",
                        state.warnings[0]), state.warnings[0]
    with read_file(path) as f:
        assert np.array_equal(f["101.1/measurement/diode1"][()],
                              rec.stream("simulation_diode_sampling_controller:diode1").data)
    _assert_still_writing(harness, 103)


# -- i. the target folder cannot be created ------------------------------------
def test_impossible_target_folder_fails_clearly(harness, tmp_path):
    blocker = tmp_path / harness.session  # where the scan's folder should be
    blocker.write_text("a file, not a folder")
    rec = harness.recording("03_ascan", number=111)
    state = _state(harness, harness.publish(rec))
    assert state.status == "FAILED", state
    assert state.error == f"FileAccessError: [Errno 17] cannot create folder '{blocker}': File exists"
    lines = _scan_lines(harness, 111)
    assert _said(lines, "ERROR") == [f"FAILED: {state.error}"], lines
    assert blocker.read_text() == "a file, not a folder"
    assert not list(tmp_path.rglob("*.h5"))
    blocker.unlink()
    _assert_still_writing(harness, 112)


# -- j. the entry already exists -----------------------------------------------
def _snapshot(group: h5py.Group) -> dict:
    out = {group.name: {k: np.asarray(v).tobytes() for k, v in group.attrs.items()}}

    def visit(name, obj):
        attrs = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}
        if isinstance(obj, h5py.Dataset):
            out[obj.name] = (obj.dtype.str, obj.shape, np.asarray(obj[()]).tobytes(), attrs)
        else:
            out[obj.name] = attrs

    group.visititems(visit)
    return out


def test_existing_entry_is_not_overwritten(harness):
    rec = harness.recording("03_ascan", number=121)
    path = Path(rec.identity["path"])
    path.parent.mkdir(parents=True)
    mine = np.arange(10, dtype=np.float32) * 1.5
    with h5py.File(path, "w") as f:
        entry = f.create_group("121.1")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "precious"
        entry["measurement/mine"] = mine
        entry["measurement/mine"].attrs["units"] = "mm"
    with read_file(path) as f:
        before = _snapshot(f["121.1"])

    state = _state(harness, harness.publish(rec))
    assert state.status == "FAILED", state
    assert state.error == f"EntryExistsError: entry 121.1 already exists in {path}: not overwritten"
    lines = _scan_lines(harness, 121)
    assert _said(lines, "ERROR") == [f"FAILED: {state.error}"], lines
    with read_file(path) as f:
        assert _snapshot(f["121.1"]) == before
        assert np.array_equal(f["121.1/measurement/mine"][()], mine)
        assert f["121.1/title"][()] == b"precious"
        assert set(f) == {"121.1"}
    _assert_still_writing(harness, 122)
    with read_file(path) as f:  # and a later scan in the same file leaves it alone too
        assert _snapshot(f["121.1"]) == before
