"""Files and paths that are not the writer's own (issue 14, items 1-5), through a real Redis.

A scan's file name comes from Redis (identity path, scan info) and from templates fed
with user names: the writer may run as root. It must never rename, replace or create
what is not its own, and must say at once what it found instead of an HDF5 file.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import WriterHarness, read_file
from nexus_writer_service.simulation.replay import ScanPublisher
from nexus_writer_service.transport.status import StatusPublisher, StatusReader

DIODE1 = "simulation_diode_sampling_controller:diode1"


def _edit_info(rec, edit) -> None:
    rec.info_created = edit(copy.deepcopy(rec.info_created))
    rec.info_prepared = edit(copy.deepcopy(rec.info_prepared))
    rec.info_final = edit(copy.deepcopy(rec.info_final))


def _retarget(rec, path) -> None:
    """The same scan, with BLISS naming ``path`` (writer 'external')."""
    rec.identity["path"] = str(path)

    def edit(info):
        info["filename"] = str(path)
        return info

    _edit_info(rec, edit)


def _renamed(rec, name: str, user: str | None = None) -> None:
    """The same scan (writer 'null': no file named) under another scan name / user."""
    rec.identity["name"] = name

    def edit(info):
        info["name"] = f"{rec.number}_{name}"
        if user is not None:
            info["user_name"] = user
        return info

    _edit_info(rec, edit)


def _state(harness, key, timeout=20):
    return harness.state(key, timeout)


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _still_writes(harness, number: int) -> None:
    rec = harness.recording("03_ascan", number=number)
    state = _state(harness, harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        assert np.array_equal(f[f"{number}.1/measurement/diode1"][()], rec.stream(DIODE1).data)


# -- 1. salvage touches only HDF5 files the writer made; a failed open leaves no record --
def _hostile_targets(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "notes.h5"
    text.write_text("my notes, not HDF5\n")
    directory = folder / "adir.h5"
    directory.mkdir()
    (directory / "inside.txt").write_text("keep me")
    precious = folder / "precious.txt"
    precious.write_text("the link's target")
    link = folder / "link.h5"
    link.symlink_to(precious)
    return {"text": text, "directory": directory, "symlink": link}


def test_failed_open_leaves_no_record_and_salvage_never_renames_what_is_not_ours(
        redis_server, tmp_path, caplog):
    first = WriterHarness(redis_server.url, tmp_path, caplog, lock_timeout=10)
    reader = StatusReader(redis_server.url)
    targets = _hostile_targets(tmp_path / first.session)
    try:
        for n, (kind, path) in enumerate(targets.items()):
            rec = first.recording("03_ascan", number=10 + n)
            _retarget(rec, path)
            state = _state(first, first.publish(rec))
            assert state.status == "FAILED", (kind, state)
            assert str(path) in state.error, state.error
            # the open failed: nothing recorded for a later writer to "salvage"
            assert reader.open_files(first.session) == set(), kind

        # crash safety kept: while a scan writes, its file is recorded
        rec = first.recording("03_ascan", number=20)
        pub = ScanPublisher(first.ds, rec, batch_size=2)
        pub.create().prepare().start()
        pub.send_data(stop_after=2)
        deadline = time.monotonic() + 10
        while (reader.scan(pub.key) or {}).get("status") != "WRITING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.open_files(first.session) == {rec.identity["path"]}
        pub.send_data(start_at=2)
        pub.end()
        assert _state(first, pub.key).status == "SUCCEEDED"
        assert reader.open_files(first.session) == set()
    finally:
        first.stop()

    before = _all_files(tmp_path / first.session)
    # what a killed writer (or anyone writing to Redis) could leave: every user path "open"
    publisher = StatusPublisher(redis_server.url, first.session)
    outside = tmp_path.parent / f"outside_{uuid.uuid4().hex[:6]}.h5"
    # starts like HDF5 and does not read: salvage would move it aside, were it not outside the roots
    outside.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 200)
    try:
        for path in [*targets.values(), outside]:
            publisher.file_opening(str(path))
        again = WriterHarness(redis_server.url, tmp_path, caplog, session=first.session,
                              allowed_roots=[str(tmp_path)])
        try:
            _still_writes(again, 30)
        finally:
            again.stop()
        assert targets["text"].read_text() == "my notes, not HDF5\n"
        assert (targets["directory"] / "inside.txt").read_text() == "keep me"
        assert targets["symlink"].is_symlink() and targets["symlink"].read_text() == "the link's target"
        assert outside.exists() and not list(tmp_path.parent.glob(outside.stem + ".damaged-*"))
        after = _all_files(tmp_path / first.session)
        assert not [p for p in after if ".damaged-" in p], after
        assert after - before == set(), (before, after)
        text = caplog.text
        assert f"{targets['text']} left open by a previous writer is not checked: it is not an HDF5 file" in text
        assert "it is a directory" in text and "it is a symbolic link" in text
        assert f"{outside} left open by a previous writer is not checked: it is outside the writer's allowed roots" in text
    finally:
        outside.unlink()


# -- 2. allowed roots ----------------------------------------------------------------
def test_files_outside_the_allowed_roots_or_relative_are_refused(make_harness, tmp_path):
    base, extra = tmp_path / "base", tmp_path / "extra"
    harness = make_harness(base_path=str(base), allowed_roots=[str(extra)])
    escape = tmp_path / "escape"
    escape.mkdir()
    base.mkdir()
    (base / "link").symlink_to(escape)  # a link inside the root leading out of it
    forbidden = f"/etc/nxw_test_{uuid.uuid4().hex[:8]}.h5"
    cases = {
        "system": forbidden,
        "via a link": str(base / "link" / "data.h5"),
        "dotdot": str(base / ".." / "escape" / "data2.h5"),
    }
    for n, (case, path) in enumerate(cases.items()):
        rec = harness.recording("03_ascan", number=40 + n)
        _retarget(rec, path)
        state = _state(harness, harness.publish(rec))
        assert state.status == "FAILED", (case, state)
        assert "outside the writer's allowed roots" in state.error, (case, state.error)
        assert str(base) in state.error and str(extra) in state.error, state.error
    assert not os.path.exists(forbidden)
    assert list(escape.iterdir()) == []

    cwd = os.getcwd()
    os.chdir(tmp_path / "escape")
    try:
        rec = harness.recording("03_ascan", number=45)
        _retarget(rec, "relative/data.h5")
        state = _state(harness, harness.publish(rec))
    finally:
        os.chdir(cwd)
    assert state.status == "FAILED" and "is relative: refused" in state.error, state
    assert list(escape.iterdir()) == []

    # inside an extra allowed root (and inside the base path): written; outside them, no more
    rec = harness.recording("03_ascan", number=46)
    _retarget(rec, tmp_path / "elsewhere" / "data.h5")
    state = _state(harness, harness.publish(rec))
    assert state.status == "FAILED" and "outside the writer's allowed roots" in state.error, state
    assert not (tmp_path / "elsewhere").exists()
    for n, path in enumerate((extra / "x" / "data.h5", base / "s" / "data.h5")):
        rec = harness.recording("03_ascan", number=50 + n)
        _retarget(rec, path)
        state = _state(harness, harness.publish(rec))
        assert state.status == "SUCCEEDED", state
        assert state.file == str(path)
        with read_file(path) as f:
            assert np.array_equal(f[f"{50 + n}.1/measurement/diode1"][()], rec.stream(DIODE1).data)


def test_without_allowed_roots_files_named_by_bliss_avoid_system_and_hidden_folders(make_harness, tmp_path):
    """The default: BLISS names files under its SCAN_SAVING.base_path, which the writer is
    not told (writer 'external'); those are written, but never in the system's folders."""
    harness = make_harness(base_path=str(tmp_path / "base"))
    tag = uuid.uuid4().hex[:8]
    refused = {f"/etc/nxw_{tag}/data.h5": "is in a system folder (/etc;",
               f"/root/nxw_{tag}.h5": "is in a system folder (/root;",
               f"/usr/local/nxw_{tag}.h5": "is in a system folder (/usr;",
               str(tmp_path / ".hidden" / "data.h5"): "is in a hidden folder"}
    (tmp_path / "sys_link").symlink_to("/etc")
    refused[str(tmp_path / "sys_link" / f"nxw_{tag}.h5")] = "is in a system folder (/etc;"
    for n, (path, why) in enumerate(refused.items()):
        rec = harness.recording("03_ascan", number=90 + n)
        _retarget(rec, path)
        state = _state(harness, harness.publish(rec))
        assert state.status == "FAILED", (path, state)
        assert f"{path!r} {why}" in state.error, state.error
    assert not os.path.exists(f"/etc/nxw_{tag}") and not os.path.exists(f"/etc/nxw_{tag}.h5")
    assert not os.path.exists(f"/root/nxw_{tag}.h5") and not (tmp_path / ".hidden").exists()
    rec = harness.recording("03_ascan", number=99)
    _retarget(rec, tmp_path / "bliss_base" / "data.h5")  # outside the writer's base path
    state = _state(harness, harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    assert "where BLISS names them outside system folders" in harness.caplog.text


# -- 3. template fields cannot leave the base folder -------------------------------------
def test_template_fields_are_sanitised_and_stay_under_the_base(make_harness, tmp_path):
    base = tmp_path / "base"
    harness = make_harness(base_path=str(base), default_path_template="{base_path}/{user}/{scan_name}.h5")
    cases = [("../../../evil", "ok"), ("name", "../../evil_user"), ("a/../../b", "/etc"), ("..", "..")]
    files = []
    for n, (name, user) in enumerate(cases):
        rec = harness.recording("33_null_ascan", number=60 + n)
        _renamed(rec, name, user)
        state = _state(harness, harness.publish(rec))
        assert state.status == "SUCCEEDED", state
        assert Path(state.file).resolve().is_relative_to(base.resolve()), state.file
        assert Path(state.file).parent.parent == base, state.file
        files.append(state.file)
    assert len(set(files)) == len(files)
    assert {p.name for p in tmp_path.iterdir()} == {"base"}  # nothing beside the base
    assert not list(tmp_path.parent.glob("evil*"))


# -- 4. NUL in a path or scan name: nothing created ------------------------------------
def test_nul_in_a_path_or_scan_name_creates_nothing(make_harness, tmp_path):
    base = tmp_path / "base"
    harness = make_harness(base_path=str(base), default_path_template="{base_path}/{session}/{scan_name}.h5")
    rec = harness.recording("03_ascan", number=70)
    _retarget(rec, str(tmp_path / "named" / "data\0.h5"))
    state = _state(harness, harness.publish(rec))
    assert state.status == "FAILED" and "NUL" in state.error, state
    rec = harness.recording("33_null_ascan", number=71)
    _renamed(rec, "scan\0name")
    state = _state(harness, harness.publish(rec))
    assert state.status == "FAILED" and "NUL" in state.error, state
    assert list(tmp_path.rglob("*")) == []  # not even a folder


# -- 5. what is at the target is said at once ---------------------------------------------
@pytest.mark.parametrize("kind, expected", [
    ("directory", "is a directory"),
    ("text", "is not an HDF5 file (it starts with b'hello, a text fi')"),
    ("empty", "is an empty file, not HDF5"),
    ("dangling", "is a dangling symbolic link (to '{nowhere}')"),
])
def test_what_is_at_the_target_is_said_at_once(make_harness, tmp_path, kind, expected):
    harness = make_harness(lock_timeout=10)
    rec = harness.recording("03_ascan", number=80)
    path = Path(rec.identity["path"])
    path.parent.mkdir(parents=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello, a text file")
    elif kind == "empty":
        path.touch()
    else:
        path.symlink_to(tmp_path / "nowhere.h5")
    t0 = time.monotonic()
    state = _state(harness, harness.publish(rec))
    elapsed = time.monotonic() - t0
    assert state.status == "FAILED", state
    error = f"FileAccessError: [Errno 17] '{path}' {expected.format(nowhere=tmp_path / 'nowhere.h5')}: not written"
    assert state.error == error  # what is there, at once: not a lock retried
    assert elapsed < 5, elapsed  # no 10 s of retries
    # this session's errors (a writer of an earlier test may still be logging: its own session's)
    assert [m for r in harness.caplog.records if r.levelname == "ERROR"
            and (m := r.getMessage()).startswith(f"[{harness.session}]")] == [
        f"[{harness.session}] [80 ascan] FAILED: {error}"]
    assert not (tmp_path / "nowhere.h5").exists()
    if kind == "text":
        assert path.read_text() == "hello, a text file"
    _retarget(rec := harness.recording("03_ascan", number=81), path.parent / "other.h5")
    assert _state(harness, harness.publish(rec)).status == "SUCCEEDED"


def test_a_damaged_hdf5_file_with_another_writers_entries_is_never_moved(redis_server, tmp_path, caplog):
    """Listed in Redis as "left open" (by a killed writer, or by anyone who can write Redis),
    an HDF5 file holding another program's entries stays where and what it is, even damaged."""
    from nexus_writer_service.writer.salvage import salvage

    path = tmp_path / "theirs.h5"
    with h5py.File(path, "w") as f:
        f["1.1/measurement/x"] = [1.0, 2.0, 3.0]
        f["1.1/writer_of_theirs"] = "blisswriter"
        big = f.create_dataset("1.1/measurement/y", data=list(range(2000)), chunks=(100,))
        offset = big.id.get_chunk_info(5).byte_offset
    content = bytearray(path.read_bytes())
    content[offset:offset + 64] = b"\xff" * 64  # damaged: the chunk no longer reads as written
    path.write_bytes(bytes(content))
    before = path.read_bytes()
    log = logging.getLogger("nexus_writer_service")
    caplog.set_level(logging.INFO, logger="nexus_writer_service")
    assert salvage(str(path), log, force=True) is None
    assert path.read_bytes() == before and not list(tmp_path.glob("theirs.damaged-*"))
    assert "holds entries this writer did not write (1.1)" in caplog.text
