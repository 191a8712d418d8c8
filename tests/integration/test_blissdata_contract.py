"""What we rely on in blissdata, checked against the installed blissdata (contract tests).

Every private name of ``transport.blissdata_api.PRIVATE`` is checked here: methods by their
parameters, attributes on live objects of a real scan in a real Redis, and each by the
behaviour we rely on (decoding before any cursor moves, counts honoured, trimmed points
counted, plugin classes never made, the Redis layouts read directly). CI runs this file at
both ends of the declared range (BLISS 2.2.1's environment, blissdata 2.0.1; .venv, 2.4.5): a
blissdata release that changes one of them fails here, by name.
"""

from __future__ import annotations

import inspect
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
from redis_om.model import model as om

from nexus_writer_service import h5map
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport import blissdata_api as api
from nexus_writer_service.transport.identity import newest_scan_key, scan_identity
from nexus_writer_service.transport.blissdata_api import DataStore
from nexus_writer_service.transport.raw_scan import EventsOnly, RawDataStore
from nexus_writer_service.transport.scans import LastOnlyStream, ScanSource, scans_since

REPO = Path(__file__).resolve().parents[2]
DIODE = "simulation_diode_sampling_controller:diode1"
MOTOR = "axis:robx"


# -- the range ------------------------------------------------------------------------------
def test_the_installed_blissdata_is_in_the_declared_range_and_its_generation_is_used():
    assert api.supported(), api.describe()
    declared = re.search(r'"blissdata([^"]*)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert declared == ">=2.0.1,<2.5,!=2.1.*,!=2.2.*"  # = api.SUPPORTED, api.EXCLUDED
    assert api.SUPPORTED == ((2, 0, 1), (2, 5, 0)) and api.EXCLUDED == ((2, 1), (2, 2))
    old = api.RELEASE[:2] < (2, 3)
    assert api.GENERATION == ("2.0" if old else "2.3")
    module = "blissdata.redis_engine.exceptions" if old else "blissdata.exceptions"
    assert api.EndOfStream.__module__ == module
    assert h5map.PROVIDER == ("nexus_writer_service" if api.RELEASE[:2] == (2, 0) else "blissdata")


@pytest.mark.parametrize("release, supported", [
    ((2, 0, 0), False), ((2, 0, 1), True), ((2, 0, 9), True), ((2, 1, 1), False), ((2, 2, 0), False),
    ((2, 3, 0), True), ((2, 4, 5), True), ((2, 4, 99), True), ((2, 5, 0), False), ((3, 0, 0), False), ((), False),
])
def test_the_supported_range_is_pyprojects(monkeypatch, release, supported):
    monkeypatch.setattr(api, "RELEASE", release)
    assert api.supported() is supported
    assert ("outside the tested range" in api.describe()) is not supported


def test_the_scan_info_schema_mapping_reads():
    """mapping/scaninfo.py and mapping/metadata.py read blissdata's schema (the leaf scaninfo_schema)."""
    import typing

    from blissdata.schemas.scan_info import ChainDict, ChannelDict

    from nexus_writer_service.scaninfo_schema import SCAN_INFO_KEYS

    # what is not BLISS's is the user's (user_scan_info): a key added here moves out of it
    assert SCAN_INFO_KEYS == {
        "acquisition_chain", "channels", "count_time", "data_policy", "data_writer", "devices", "display_extra",
        "end_reason", "end_time", "group", "index_in_sequence", "is_scan_sequence", "npoints", "plots",
        "publisher", "publisher_version", "retry_nb", "save", "scan_nb", "sequence_info", "session_name",
        "sleep_time", "stab_time", "start_time", "title", "type", "user_name", "writer_options"}
    assert set(typing.get_type_hints(ChainDict)) == {"top_master", "devices", "scalars", "spectra", "images",
                                                     "master"}
    assert {"dim", "display_name", "unit", "axis_id", "axis_points", "axis_kind"} <= set(typing.get_type_hints(ChannelDict))


@pytest.mark.parametrize("info, plugin", [
    ({"plugin": "lima", "format": "lima_v1"}, "lima"),
    ({"format": "lima_v1"}, "lima"),
    ({"format": "lima_v2"}, "lima2"),
    ({"format": "subscan"}, "scan_sequence"),
    ({"plugin": "mosca"}, "mosca"),
    ({"format": "other"}, None),
    ({}, None),
])
def test_the_plugin_a_stream_names_in_either_naming(info, plugin):
    """blissdata < 2 named a stream's plugin by ``info["format"]``: the transport reads both."""
    assert api.plugin_name(info) == plugin


# -- private methods: present, and called as we call them ----------------------------------
_CALLS = [p for p in api.PRIVATE if p.kind in ("method", "classmethod")]


@pytest.mark.parametrize("entry", _CALLS, ids=[f"{p.owner}.{p.name}" for p in _CALLS])
def test_private_methods_take_the_parameters_we_pass(entry):
    owner = getattr(api, entry.owner)
    member = inspect.getattr_static(owner, entry.name)
    assert isinstance(member, classmethod) == (entry.kind == "classmethod"), (entry, member)
    assert tuple(inspect.signature(getattr(owner, entry.name)).parameters) == entry.params


_MODULE_ATTRS = [p for p in api.PRIVATE if p.kind == "module attribute"]


@pytest.mark.parametrize("entry", _MODULE_ATTRS, ids=[p.name for p in _MODULE_ATTRS])
def test_private_module_attributes(entry):
    value = getattr(getattr(api, entry.owner), entry.name)
    assert isinstance(value, str if entry.name == "scan_creation_stream" else dict)


# -- a real scan ----------------------------------------------------------------------------
@pytest.fixture
def ds(redis_server):
    store = api.DataStore(redis_server.url)
    store.url = redis_server.url  # (the store keeps it privately)
    return store


def _publisher(ds, tmp_path, number=7, session=None) -> ScanPublisher:
    rec = relocate(load_recording("03_ascan"), tmp_path, session=session or f"contract_{uuid.uuid4().hex[:8]}",
                   number=number)
    return ScanPublisher(ds, rec, batch_size=2)


@pytest.fixture
def running(ds, tmp_path):
    """A scan of the recorded ascan, started, its 6 points sent in entries of 2 points."""
    pub = _publisher(ds, tmp_path).create().prepare().start()
    pub.send_data()
    pub.join()
    yield pub
    if pub.scan.state < api.ScanState.CLOSED:
        pub.end()


def _raw(ds, key, *names):
    scan = RawDataStore(ds.url).load_scan(key)
    return scan, [api.Stream(scan.streams[n].event_stream) for n in names]


def test_private_attributes_exist_on_live_objects(ds, running):
    scan, streams = _raw(ds, running.key, DIODE)
    group = api.CursorGroup(streams)
    cursor = next(iter(group._active_cursors.values()))
    events = streams[0].event_stream
    seen = []
    decode = events._decode_entries
    events._decode_entries = lambda entries: seen.extend(entries) or decode(entries)
    view = group.read(block=False)[streams[0]]
    # the publisher's objects for what the simulators use (a reader's event stream has no sink)
    live = {"DataStore": ds, "CursorGroup": group, "Cursor": cursor, "View": view, "StreamEntry": seen[0],
            "EventStream": running.streams[DIODE].event_stream, "Scan": running.scan}
    missing = [f"{p.owner}.{p.name}" for p in api.PRIVATE
               if p.kind == "attribute" and not hasattr(live[p.owner], p.name)]
    assert not missing
    assert isinstance(api.redis_client(ds), redis.Redis) and api.redis_client(ds).ping()
    assert cursor._hl_stream is streams[0] and cursor._ll_stream is events and cursor._ll_eos is False
    assert callable(running.streams[DIODE].event_stream._sink.stop)
    entry = seen[0]
    assert (entry.length, entry.is_seal, len(entry.batch.payload)) == (2, False, 2 * 8)  # 2 float64
    assert view._events.nb_expired == 0 and len(view) == 6


def test_decoding_happens_per_stream_before_any_cursor_moves(ds, running):
    """transport/scans.py: one stream's entries failing to decode fail it alone."""
    scan, streams = _raw(ds, running.key, MOTOR, DIODE)
    group = api.CursorGroup(streams)
    events = streams[1].event_stream
    decode = events._decode_entries

    def broken(entries):
        raise ValueError("cannot decode")

    events._decode_entries = broken  # an instance attribute: what CursorGroup calls
    with pytest.raises(ValueError, match="cannot decode"):
        group.read(block=False)
    assert [c._ll_index for c in group._active_cursors.values()] == [0, 0]  # nothing consumed
    events._decode_entries = decode
    views = group.read(block=False)
    np.testing.assert_array_equal(views[streams[0]].get_data(), running.rec.stream(MOTOR).data)
    np.testing.assert_array_equal(views[streams[1]].get_data(), running.rec.stream(DIODE).data)


def test_multi_stream_reads_take_our_count_and_views_come_back_per_stream(ds, running):
    scan, streams = _raw(ds, running.key, MOTOR, DIODE)
    group = api.CursorGroup(streams)
    ranges = group._read_next_events_multi(dict(group._active_cursors), None, 1, set())
    views = group._create_data_views(ranges, False)
    assert {s.name: len(v) for s, v in views.items()} == {MOTOR: 2, DIODE: 2}  # one entry each
    ranges = group._read_next_events_multi(dict(group._active_cursors), None, 100, set())
    views = group._create_data_views(ranges, False)
    assert {s.name: v.index for s, v in views.items()} == {MOTOR: 2, DIODE: 2}
    np.testing.assert_array_equal(views[streams[1]].get_data(), running.rec.stream(DIODE).data[2:])


def test_last_only_streams_give_their_newest_event(ds, running):
    scan, _ = _raw(ds, running.key)
    stream = LastOnlyStream(scan.streams[DIODE].event_stream)
    assert stream._need_last_only(False) is True
    group = api.CursorGroup([stream])
    ranges = group._read_last_event_multi(dict(group._active_cursors))
    views = group._create_data_views(ranges, True)
    view = views[stream]
    np.testing.assert_array_equal(view.get_data(), running.rec.stream(DIODE).data[-1:])
    assert view.index == 5
    assert group.read(block=False) == {}  # nothing newer


def test_sealed_streams_retire_their_cursors(ds, running):
    running.end()
    scan, streams = _raw(ds, running.key, DIODE)
    group = api.CursorGroup(streams)
    assert len(group.read(block=False)[streams[0]]) == 6
    with pytest.raises(api.EndOfStream):
        while True:
            group.read(block=False)
    assert not group._active_cursors and len(group._dead_cursors) == 1
    assert next(iter(group._dead_cursors.values()))._ll_eos is True


def test_points_trimmed_from_redis_are_counted_in_the_view(ds, running):
    scan, streams = _raw(ds, running.key, DIODE)
    key = streams[0].event_stream.key
    assert api.redis_client(ds).xtrim(key, maxlen=2, approximate=False) == 1  # the first entry: 2 points
    view = api.CursorGroup(streams).read(block=False)[streams[0]]
    assert view._events.nb_expired == 2 and len(view) == 6
    with pytest.raises(api.IndexNoMoreThereError):
        view.get_data()
    np.testing.assert_array_equal(view.get_data(2, None), running.rec.stream(DIODE).data[2:])


# -- loading scans ----------------------------------------------------------------------------
def test_raw_loading_never_makes_plugin_classes(ds, tmp_path, monkeypatch):
    """transport/raw_scan.py: Scan._load with our subclass, _wrap_event_stream overridden."""
    from nexus_writer_service.simulation.lima import LimaDetector, add_lima

    rec = relocate(load_recording("03_ascan"), tmp_path, session="contract_lima", number=3)
    rec = add_lima(rec, LimaDetector("lima_simulator", file_format="HDF5"), str(tmp_path / "img"))
    pub = ScanPublisher(ds, rec).create().prepare().start()
    pub.send_data()
    made = []
    monkeypatch.setattr(api.scan_module, "loaded_plugins",
                        {name: type("Spy", (), {"stream_cls": lambda self, ev, n=name: made.append(n)})()
                         for name in ("lima", "lima2", "hdf5_fallback", "scan_sequence")})
    scan = RawDataStore(ds.url).load_scan(pub.key)
    assert set(scan.streams) == {s.name for s in rec.streams}
    assert all(type(s) is EventsOnly for s in scan.streams.values()) and not made
    assert scan.state == api.ScanState.STARTED and scan.info["title"] == rec.info_prepared["title"]
    assert isinstance(scan, api.Scan)
    assert scan.streams["lima_simulator:image"].info["plugin"] == "lima"
    pub.end()
    assert scan.update(block=False) and scan.state == api.ScanState.CLOSED
    assert all(type(s) is EventsOnly for s in scan.streams.values()) and not made
    with pytest.raises(api.ScanLoadError):
        RawDataStore(ds.url).load_scan(f"{pub.key[:-4]}XXXX")


def test_the_scan_document_is_read_at_the_json_paths_we_use(ds, running):
    raw = api.redis_client(ds).json().get(running.key, api.SCAN_DOC_INFO, api.SCAN_DOC_STREAMS)
    assert raw[api.SCAN_DOC_INFO] == [running.scan.info]
    assert set(raw[api.SCAN_DOC_STREAMS][0]) == {s.name for s in running.rec.streams}
    source = ScanSource(RawDataStore(ds.url), running.key)
    source.load(timeout=0)
    assert source._info_is_current()


def test_scan_documents_validate_as_redis_oms_own_get_makes_them(ds, running):
    """transport/raw_scan.py: the store's model validates documents without redis-om's walks."""
    store = RawDataStore(ds.url)
    model = store._scan_model
    pk = running.key[len(model.make_key("")):]
    walks = hasattr(om, "convert_timestamp_to_datetime")  # redis-om 1.x (blissdata 2.4)
    assert ("get" in vars(model)) is walks  # replaced only where redis-om walks documents
    ours, theirs = model.get(pk), om.JsonModel.get.__func__(model, pk)
    assert ours.model_dump() == theirs.model_dump()
    assert ours.info == running.scan.info and set(ours.data_streams) == {s.name for s in running.rec.streams}
    with pytest.raises(om.NotFoundError):
        model.get(pk + "X")
    assert type(DataStore(ds.url)._scan_model.__dict__.get("get")) is not classmethod  # other stores: as they are


def test_the_identity_index_finds_the_newest_scan_of_an_identifier(ds, tmp_path):
    session = f"contract_{uuid.uuid4().hex[:8]}"
    first = _publisher(ds, tmp_path, 9, session)
    first.run()
    second = _publisher(ds, tmp_path, 9, session)
    second.run()
    other = _publisher(ds, tmp_path, 10, session)
    other.run()
    assert newest_scan_key(ds, session, 9, "ascan") == second.key
    assert newest_scan_key(ds, session, 10, "ascan") == other.key
    assert newest_scan_key(ds, session, 11, "ascan") is None
    assert newest_scan_key(ds, "no-such session.x", 9, "ascan") is None  # escaped, not a syntax error
    ident = scan_identity(ds, second.key)
    assert (ident.session, ident.name, ident.number) == (session, "ascan", 9)


def test_the_scan_creation_stream_lists_created_scans(ds, tmp_path):
    pub = _publisher(ds, tmp_path).create()
    timetag, keys = scans_since(ds, 600)
    assert pub.key in keys and keys[-1] == pub.key
    assert timetag == ds.get_last_scan_timetag()
    entry = api.redis_client(ds).xrevrange(api.scan_creation_stream, count=1)[0]
    assert entry[1] == {b"key": pub.key.encode()}
    pub.prepare().start().end()


# -- the plan's models (blissdata.h5map, or ours under blissdata 2.0.x) ------------------------
def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    return type(a) is type(b) and a == b


_VALUES = ["abc", "", 3, True, 1.5, [1, 2], ["a", "bb"], np.float32(2.5), np.arange(4, dtype="u1").reshape(2, 2),
           [True, 1, 1.5], np.int8(3), float("nan"), float("inf"), b"xy", {"a": 1}, [1, "a", None], 1 + 2j]


def _probe(models, value):
    try:
        return ("ok", models.InlineRaw(value).model_dump())
    except Exception as exc:
        return ("refused", type(exc).__name__)


def test_our_h5map_models_coerce_and_refuse_as_blissdatas():
    from nexus_writer_service import h5map_v2_0 as ours

    theirs = pytest.importorskip("blissdata.h5map", reason="blissdata 2.0.x has no h5map: ours are the models")
    for value in _VALUES:
        assert _same(_probe(ours, value), _probe(theirs, value)), value
    for dtype, value in (("float64", float("nan")), ("float64", [1.0, float("inf")]), ("int32", [1, 2]),
                         ("float32", np.float32(1.5)), ("complex128", 1 + 2j)):
        a, b = ours.Inline(dtype=dtype, value=value), theirs.Inline(dtype=dtype, value=value)
        assert _same(a.model_dump(), b.model_dump()) and np.array_equal(a.decode(), b.decode(), equal_nan=True)
    a, b = ours.InlineRaw(["a", "bb"]).decode(), theirs.InlineRaw(["a", "bb"]).decode()
    assert a.tolist() == b.tolist() and a.dtype == b.dtype


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic, on values set on built nodes
def test_every_fixtures_plan_is_the_same_tree_with_our_models_and_blissdatas():
    from nexus_writer_service import h5map_v2_0 as ours
    from nexus_writer_service.descriptions import ScanDescription, describe_stream
    from nexus_writer_service.kinds import classify
    from nexus_writer_service.mapping.layout import final_tree, plan_scan, start_tree
    from nexus_writer_service.simulation.recording import fixture_names

    theirs = pytest.importorskip("blissdata.h5map", reason="blissdata 2.0.x has no h5map: ours are the models")
    checked, expected_trees = 0, 0
    for name in fixture_names():
        rec = load_recording(name)
        # one entry per top master of the acquisition chain, a start and a final tree each
        expected_trees += 2 * len(rec.info_prepared["acquisition_chain"])
        desc = classify(ScanDescription("esrf:scan:x", rec.identity["name"], rec.number, "s", rec.info_prepared,
                                        [describe_stream(s.name, s.info, s.encoding) for s in rec.streams],
                                        rec.identity["path"]))
        plan = plan_scan(desc)
        for entry in plan.entries:
            lengths = {ch.stream: len(rec.stream(ch.stream).data) for ch in entry.channels}
            for tree in (start_tree(desc, entry),
                         final_tree(desc, entry, rec.info_final, lengths, "SUCCEEDED", ["a warning"])):
                dump = tree.model_dump()  # (values set on built nodes are validated here)
                expected = theirs.Group.model_validate(dump).model_dump()
                mine = ours.Group.model_validate(dump)
                assert _same(mine.model_dump(), expected), name
                assert _same(theirs.Group.model_validate(mine.model_dump()).model_dump(), expected), name
                checked += 1
    assert (checked, len(fixture_names())) == (expected_trees, 22)
