"""The io layer's storage rules without Redis: free space, reserving blocks, what happened
to a file under an open handle (deleted, moved, replaced, cut, overwritten, read-only)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from nexus_writer_service.io import space
from nexus_writer_service.io.files import FileHandle, FileRegistry, lock_holders
from nexus_writer_service.io.space import SpaceRule, no_space_message, storage_errno


# -- free space --------------------------------------------------------------------------

def test_space_rule_on_a_small_disk(small_disk):
    path = str(small_disk / "sub" / "file.h5")  # neither the file nor its folder exist yet
    free = shutil.disk_usage(small_disk).free / space.MB
    assert SpaceRule(required_mb=free - 1).shortage(path) == ""
    assert SpaceRule(required_mb=free - 1).shortage(path, margin_mb=2) == \
        f"no space left on {small_disk}: {free:.1f} MB free (below the required {free - 1:.0f} MB)"
    assert SpaceRule(required_mb=0).shortage(path, margin_mb=1000) == ""  # 0: the guard is off
    assert SpaceRule(recommended_mb=free + 1).low(path) == \
        f"disk space low on {small_disk}: {free:.0f} MB free (below the recommended {free + 1:.0f} MB)"
    assert SpaceRule(recommended_mb=free - 1).low(path) == ""
    assert no_space_message(path, 1.25, 200) == f"no space left on {small_disk}: 1.2 MB free (below the required 200 MB)"


def test_writer_and_tango_device_share_one_rule():
    from nexus_writer_service.writer.config import WriterConfig

    config = WriterConfig()
    assert (config.required_disk_space, config.recommended_disk_space) == (space.REQUIRED_MB, space.RECOMMENDED_MB)
    assert (space.REQUIRED_MB, space.RECOMMENDED_MB) == (200.0, 1024.0)  # as ESRF's writers
    pytest.importorskip("tango")
    from nexus_writer_service.tango.session_device import SessionDevice

    assert SessionDevice.required_disk_space.default_value == space.REQUIRED_MB
    assert SessionDevice.recommended_disk_space.default_value == space.RECOMMENDED_MB


@pytest.mark.parametrize("exc, number", [
    (OSError(28, "No space left on device"), 28),
    (RuntimeError("Unable to flush file (file write failed: ..., errno = 28, error message = 'No space"), 28),
    (OSError("[Errno 27] Can't synchronously write data"), 27),
    (OSError(2, "No such file or directory"), None),
    (ValueError("errno = 280, something else"), None),
])
def test_storage_errno(exc, number):
    assert storage_errno(exc) == number


def test_reserve_takes_the_blocks_and_gives_them_back(small_disk):
    path = small_disk / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 100)
        before = shutil.disk_usage(small_disk).free
        assert space.reserve(fd, 4 * space.MB) is True
        assert os.fstat(fd).st_size == 100  # the file's size does not change
        assert before - shutil.disk_usage(small_disk).free >= 4 * space.MB
        assert space.reserve(fd, 64 * space.MB) is False  # more than the disk has
        space.unreserve(fd, 4 * space.MB)
        assert shutil.disk_usage(small_disk).free == before
        assert os.fstat(fd).st_size == 100
    finally:
        os.close(fd)


# -- the file under an open handle -------------------------------------------------------

@pytest.fixture
def handle(tmp_path):
    path = str(tmp_path / "data" / "file.h5")
    os.makedirs(os.path.dirname(path))
    h5 = h5py.File(path, "a")
    h5["x"] = np.arange(10)
    h5.flush()
    handle = FileHandle(path, h5)
    yield handle
    os.chmod(os.path.dirname(path), 0o755)
    h5.close()


def _other_hdf5(path):
    with h5py.File(path + ".tmp", "w") as f:
        f["y"] = 1
    os.replace(path + ".tmp", path)


@pytest.mark.parametrize("act, kind, message", [
    (lambda p: None, None, None),
    (os.remove, "deleted", "the file was deleted while it was written"),
    (lambda p: os.rename(p, p + ".moved"), "moved", "the file was moved to {path}.moved while it was written"),
    (lambda p: (os.rename(p, p + ".moved"), _other_hdf5(p)), "moved",
     "the file was moved to {path}.moved while it was written (another file is at the path now)"),
    (lambda p: (os.remove(p), _other_hdf5(p)), "replaced", "the file was replaced by another file while it was written"),
    (lambda p: os.truncate(p, 0), "truncated", "the file was truncated while it was written (nothing is left of it)"),
    (lambda p: os.truncate(p, 3), "truncated", "the file was truncated while it was written (nothing is left of it)"),
    (lambda p: (os.truncate(p, 0), os.truncate(p, 4096)), "truncated",
     "the file was truncated while it was written (its start is gone)"),
    (lambda p: open(p, "r+b").write(b"garbage!"), "overwritten",
     "the file was overwritten: it no longer starts as an HDF5 file"),
    (lambda p: os.chmod(os.path.dirname(p), 0o555), "read-only",
     "the file or its folder {folder} was made read-only while it was written"),
])
def test_file_change_is_named(handle, act, kind, message):
    path = handle.path
    act(path)
    change = handle.check()
    if kind is None:
        assert change is None
        assert handle.flush() is True
        return
    assert (change.kind, change.message) == (kind, message.format(path=path, folder=os.path.dirname(path)))
    assert change.lost == (kind in ("deleted", "replaced", "truncated", "overwritten"))
    assert handle.check() is change  # said once, kept
    if kind == "moved":
        assert change.new_path == path + ".moved"
        assert handle.flush() is True  # still our file: it goes on where it went
    else:
        with pytest.raises(OSError) as raised:
            handle.flush()
        assert raised.value.errno == errno.ESTALE and raised.value.change is change


def test_registry_never_hands_out_a_handle_whose_file_left(tmp_path):
    registry = FileRegistry()
    path = str(tmp_path / "a.h5")
    first = registry.acquire(path)
    os.rename(path, str(tmp_path / "b.h5"))
    second = registry.acquire(path)  # the path gets a file of its own
    assert second is not first and second.h5.filename == path and os.path.exists(path)
    registry.release(first)
    registry.release(second)


def test_lock_holders_names_the_process(tmp_path):
    path = str(tmp_path / "locked.h5")
    with h5py.File(path, "w"):
        pass
    holder = subprocess.Popen(["python3", "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_SH); print('in', flush=True); time.sleep(30)", path],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "in\n"
        with open(f"/proc/{holder.pid}/comm") as f:
            name = f.read().strip()
        assert lock_holders(path) == [f"pid {holder.pid} ({name})"]
    finally:
        holder.kill()
        holder.wait()
    assert lock_holders(path) == []
