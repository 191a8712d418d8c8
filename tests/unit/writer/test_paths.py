"""Which file a scan goes to (``writer/paths.py``): names from Redis and users never
leave the folders the writer was given."""

from __future__ import annotations

from datetime import datetime

import pytest

from nexus_writer_service.descriptions import ScanDescription
from nexus_writer_service.writer.paths import (PathRefused, check_session_name, check_template, checked_path,
                                               safe_field, scan_file, target_file)

TEMPLATE = "{base_path}/{session}/{scan_name}_{scan_number}.h5"


def desc(name="ascan", number=3, session="demo", info=None, path=None) -> ScanDescription:
    return ScanDescription(key="esrf:scan:X", name=name, number=number, session=session,
                           info=info or {}, streams=[], path=path)


@pytest.mark.parametrize("name", ["demo", "id00_session", "a.b-c", "x" * 100, "0"])
def test_session_names_accepted(name):
    assert check_session_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "a:b", ".hidden", "a b", "x" * 101, "a..b", "-a", None, 3])
def test_session_names_refused(name):
    with pytest.raises(ValueError, match="invalid session name"):
        check_session_name(name)


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"), ("a/b", "a_b"), ("a\\b", "a_b"), ("..", "_"), ("...", "_."), (".", "_"),
    ("../../etc", "____etc"), (7, "7"), ("", ""),
])
def test_safe_field(value, expected):
    assert safe_field(value) == expected


def test_safe_field_refuses_nul():
    with pytest.raises(PathRefused, match="a NUL character"):
        safe_field("a\0b")


@pytest.mark.parametrize("path, expected", [
    ("/data/a.h5", "/data/a.h5"), ("/data//x/../a.h5", "/data/a.h5"), ("/data/./a.h5", "/data/a.h5"),
])
def test_checked_path_normalises(path, expected):
    assert checked_path(path) == expected


@pytest.mark.parametrize("path, message", [
    ("data/a.h5", "is relative"), ("a.h5", "is relative"), ("/data/a\0.h5", "holds a NUL character"),
])
def test_checked_path_refuses(path, message):
    with pytest.raises(PathRefused, match=message):
        checked_path(path)


def test_template_accepted():
    assert check_template(TEMPLATE, "/data") == TEMPLATE
    assert check_template("{base_path}/{scan_number:04d}.h5", "/data") == "{base_path}/{scan_number:04d}.h5"


@pytest.mark.parametrize("template, message", [
    ("{base_path}/{nope}.h5", "unknown field {nope}"),
    ("{base_path}/{session.x}.h5", "unknown field {session.x}"),
    ("{base_path}/{session!r}.h5", "no conversion or format for {session}"),
    ("{base_path}/{session:>5}.h5", "no conversion or format for {session}"),
    ("{session}/a.h5", "gives a relative path"),
    ("/elsewhere/{session}.h5", "gives files outside the base path /data"),
    ("{base_path}/../{session}.h5", "gives files outside the base path /data"),
    ("{base_path}/{", "Single '{' encountered"),
])
def test_template_refused(template, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        check_template(template, "/data")


@pytest.mark.parametrize("description, expected", [
    (desc(path="/data/id00/named.h5"), "/data/id00/named.h5"),
    (desc(info={"filename": "/data/id00/info.h5"}), "/data/id00/info.h5"),
    (desc(info={"nexuswriter": {"filename": "/data/id00/gen.h5"}}), "/data/id00/gen.h5"),
    # the identity's path first, then scan_info's filename, then the generators'
    (desc(path="/p.h5", info={"filename": "/f.h5", "nexuswriter": {"filename": "/g.h5"}}), "/p.h5"),
    (desc(info={"filename": "/f.h5", "nexuswriter": {"filename": "/g.h5"}}), "/f.h5"),
    (desc(path="/data/x/../named.h5"), "/data/named.h5"),
])
def test_a_file_named_by_bliss(description, expected):
    assert target_file(description, "/base", TEMPLATE) == (expected, False)


def test_the_template_when_nothing_is_named():
    assert target_file(desc(), "/base", TEMPLATE) == ("/base/demo/ascan_3.h5", True)
    today = datetime.now().strftime("%Y%m%d")
    assert target_file(desc(info={"user_name": "op/x"}), "/base", "{base_path}/{date}/{user}.h5") == (
        f"/base/{today}/op_x.h5", True)


def test_names_from_redis_stay_below_the_base_path():
    assert target_file(desc(name="../../etc/passwd", session=".."), "/base", TEMPLATE) == (
        "/base/_/____etc_passwd_3.h5", True)


@pytest.mark.parametrize("description, message", [
    (desc(path="relative.h5"), "is relative"),
    (desc(info={"filename": "/a\0.h5"}), "holds a NUL character"),
    (desc(name="a\0b"), "a NUL character"),
])
def test_target_refused(description, message):
    with pytest.raises(PathRefused, match=message):
        target_file(description, "/base", TEMPLATE)


def test_a_template_outside_the_base_path_is_refused():
    with pytest.raises(PathRefused, match="outside the base path '/base'"):
        target_file(desc(), "/base", "/other/{scan_name}.h5")


@pytest.mark.parametrize("info, expected", [
    ({}, None),
    ({"writer_options": {"separate_scan_files": False}, "images_path": "/d/scan0003/{img_acq_device}_"}, None),
    ({"writer_options": {"separate_scan_files": True}}, None),
    ({"writer_options": {"separate_scan_files": True}, "images_path": ""}, None),
    ({"writer_options": {"separate_scan_files": True}, "images_path": 3}, None),
    ({"writer_options": True, "images_path": "/d/scan0003/x"}, None),
    ({"writer_options": {"separate_scan_files": True}, "images_path": "/d/scan0003/{img_acq_device}_"},
     "/d/scan0003/bliss_master.h5"),
    ({"writer_options": {"separate_scan_files": True}, "images_path": "/d/a/b/{x}/c"}, "/d/a/b/bliss_master.h5"),
    ({"writer_options": {"separate_scan_files": True}, "images_path": "/d/{x}"}, "/d/bliss_master.h5"),
    # the scan folder stays below the dataset's
    ({"writer_options": {"separate_scan_files": True}, "images_path": "/elsewhere/scan/{x}"}, None),
])
def test_separate_scan_files(info, expected):
    assert scan_file(info, "/d/dataset.h5") == expected


def test_separate_scan_files_keep_the_datasets_extension():
    info = {"writer_options": {"separate_scan_files": True}, "images_path": "/d/s1/{x}"}
    assert scan_file(info, "/d/dataset.nx") == "/d/s1/bliss_master.nx"
    assert scan_file(info, "/d/dataset") == "/d/s1/bliss_master.h5"
