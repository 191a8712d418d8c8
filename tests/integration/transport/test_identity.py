"""Which scan BLISS means (``transport/identity.py``), through a real Redis: the newest
scan of an identifier, whatever characters the session and scan names hold, and the file
a scan names, in the order BLISS names it."""

from __future__ import annotations

import uuid

import pytest

from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.identity import ScanIdentity, newest_scan_key, scan_identity


def _session() -> str:
    return f"ident_{uuid.uuid4().hex[:8]}"


def _scan(ds, tmp_path, session: str, number: int = 5, name: str | None = None, path: str | None = "keep",
          info: dict | None = None) -> str:
    """A closed scan of the recorded ascan with this identity (``path``: "keep" the recording's)."""
    rec = relocate(load_recording("03_ascan"), tmp_path, session=session, number=number)
    if name is not None:
        rec.identity["name"] = name
    if path != "keep":
        rec.identity["path"] = path
    if info is not None:
        for stage in (rec.info_created, rec.info_prepared, rec.info_final):
            stage.pop("filename", None)
            stage.pop("nexuswriter", None)
            stage.update(info)
    pub = ScanPublisher(data_store=ds, rec=rec).create()
    pub.prepare().start().end()
    return pub.key


def test_the_newest_of_repeated_identifiers(data_store, tmp_path):
    session = _session()
    keys = [_scan(data_store, tmp_path, session, 5) for _ in range(3)]
    other = _scan(data_store, tmp_path, session, 6)
    assert newest_scan_key(data_store, session, 5, "ascan") == keys[-1]
    assert newest_scan_key(data_store, session, 6, "ascan") == other
    assert newest_scan_key(data_store, session, 7, "ascan") is None
    assert newest_scan_key(data_store, session, 5, "dscan") is None
    assert newest_scan_key(data_store, _session(), 5, "ascan") is None


@pytest.mark.parametrize("name", ["my-scan.v2", "a scan", "x:y", "{a}", "50%", "a@b"])
def test_names_with_search_characters_are_escaped(data_store, tmp_path, name):
    session = _session()
    key = _scan(data_store, tmp_path, session, 8, name=name)
    plain = _scan(data_store, tmp_path, session, 8)  # "ascan": never matched by a prefix or pattern
    assert newest_scan_key(data_store, session, 8, name) == key
    assert newest_scan_key(data_store, session, 8, "ascan") == plain


def test_a_session_of_search_characters_finds_nothing_and_raises_nothing(data_store, tmp_path):
    session = _session()
    _scan(data_store, tmp_path, session, 9)
    assert newest_scan_key(data_store, f"{session}-x.y", 9, "ascan") is None
    assert newest_scan_key(data_store, "a*", 9, "ascan") is None


def test_the_identity_with_the_file_bliss_names(data_store, tmp_path):
    session = _session()
    key = _scan(data_store, tmp_path, session, 11, path="/data/named/by_identity.h5")
    assert scan_identity(data_store, key) == ScanIdentity(key, session, "ascan", 11, "/data/named/by_identity.h5")


@pytest.mark.parametrize("info, expected", [
    ({"filename": "/data/info.h5"}, "/data/info.h5"),
    ({"nexuswriter": {"filename": "/data/generators.h5"}}, "/data/generators.h5"),
    ({"filename": "/data/info.h5", "nexuswriter": {"filename": "/data/generators.h5"}}, "/data/info.h5"),
    ({"filename": ""}, None),
    ({}, None),
])
def test_without_a_path_the_scan_info_names_the_file(data_store, tmp_path, info, expected):
    session = _session()
    key = _scan(data_store, tmp_path, session, 12, path=None, info=info)
    assert scan_identity(data_store, key) == ScanIdentity(key, session, "ascan", 12, expected)


def test_a_scan_not_in_redis_has_no_identity(data_store, tmp_path):
    key = _scan(data_store, tmp_path, _session(), 13)
    missing = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert scan_identity(data_store, missing) is None
