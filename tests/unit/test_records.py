"""The scan record as readers get it from Redis (``records.read_record``): every field with
its type, whatever was stored; garbage is no record, never an exception."""

from __future__ import annotations

import json
import logging

import pytest

from nexus_writer_service import records
from nexus_writer_service.records import ScanRecord, StoredRecord, points, read_record

DEFAULTS = {"key": "k", "name": "", "number": None, "status": "PENDING", "file": None, "entries": [],
            "written": {}, "warnings": [], "error": None, "expected": None, "end_reason": None,
            "published": None, "started": None, "ended": None, "session": None, "updated": None}


@pytest.fixture(autouse=True)
def nothing_said_yet(monkeypatch):
    """Each test sees its bad records said (the process says each once)."""
    monkeypatch.setattr(records, "_SAID", type(records._SAID)())


def test_the_writers_own_record_reads_back_whole():
    state = ScanRecord("esrf:scan:01", name="ascan", number=7, status="SUCCEEDED", file="/data/a.h5",
                       entries=["7.1"], written={"diode": 10}, warnings=["w"], error=None, expected=10,
                       end_reason="SUCCESS", published=10, started=1.5, ended=2.5)
    stored = dict(state.to_dict(), session="demo", updated=3.0)
    assert read_record(json.dumps(stored)) == stored
    assert read_record(json.dumps(stored).encode()) == stored
    assert read_record(stored) == stored


def test_the_stored_model_has_the_records_fields_and_the_stores():
    assert list(StoredRecord.model_fields) == list(DEFAULTS)


@pytest.mark.parametrize("stored, expected", [
    # missing fields take their default
    ({"key": "k"}, {}),
    # a field this version does not know (a newer writer's) is ignored
    ({"key": "k", "colour": "red"}, {}),
    # wrong types are dropped: text for a number, a bool for a count, a number for text
    ({"key": "k", "number": "7"}, {}),
    ({"key": "k", "number": True}, {}),
    ({"key": "k", "expected": 2.5}, {}),
    ({"key": "k", "name": 3, "status": None}, {}),
    ({"key": "k", "file": ["a"]}, {}),
    # a float field takes an int (JSON writes 2.0 as 2)
    ({"key": "k", "started": 2, "updated": 3}, {"started": 2.0, "updated": 3.0}),
    ({"key": "k", "ended": True}, {}),
    # items of lists and mappings: the wrong ones alone
    ({"key": "k", "entries": ["1.1", 2, "2.1", None]}, {"entries": ["1.1", "2.1"]}),
    ({"key": "k", "written": {"a": 3, "b": "x", "c": False, "d": 1.5}}, {"written": {"a": 3}}),
    ({"key": "k", "warnings": "one"}, {}),
    ({"key": "k", "written": [1, 2]}, {}),
    ({"key": "k", "number": 5, "error": "<b>x</b>"}, {"number": 5, "error": "<b>x</b>"}),
])
def test_fields_of_the_wrong_type_take_their_default(stored, expected):
    assert read_record(json.dumps(stored)) == {**DEFAULTS, **expected}


@pytest.mark.parametrize("raw", [
    "", "not json", b"\xff\xfe", "[1, 2]", "3", "null", '"text"', "{}",
    '{"key": 3}', '{"key": null}', '{"name": "ascan"}', "{\"key\": [\"k\"]}", 12, [("key", "k", "x")],
])
def test_garbage_is_no_record(raw, caplog):
    with caplog.at_level(logging.WARNING, "nexus_writer_service.records"):
        assert read_record(raw) is None
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("scan record ignored (")


def test_none_is_no_record_and_nothing_is_said(caplog):
    with caplog.at_level(logging.DEBUG, "nexus_writer_service.records"):
        assert read_record(None) is None
    assert caplog.records == []


def test_a_bad_record_is_said_once_with_what_was_dropped(caplog):
    raw = json.dumps({"key": "said:once", "number": "x", "written": {"a": "y"}})
    with caplog.at_level(logging.WARNING, "nexus_writer_service.records"):
        first = read_record(raw)
        second = read_record(raw)
    assert first == second == {**DEFAULTS, "key": "said:once"}
    assert [r.getMessage() for r in caplog.records] == [
        f"scan record said:once: values of the wrong type dropped (number, written.a): {raw!r}"]


def test_a_record_without_key_is_said_as_foreign(caplog):
    raw = '{"name": "foreign", "zz": 1}'
    with caplog.at_level(logging.WARNING, "nexus_writer_service.records"):
        assert read_record(raw) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"scan record ignored (no string key: not a record of this writer): {raw!r}"]


@pytest.mark.parametrize("written, expected", [({}, 0), ({"a": 3, "b": 7}, 7), (None, 0)])
def test_points_are_the_most_of_any_stream(written, expected):
    assert points({"written": written}) == expected
