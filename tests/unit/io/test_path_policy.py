"""The path policy without Redis or HDF5: what the writer refuses, in the words its scans
FAIL with, and the policy as the heartbeat carries it to the Tango devices."""

from __future__ import annotations

import errno
import os

import pytest

from nexus_writer_service.io.path_policy import PathPolicy
from nexus_writer_service.writer.config import WriterConfig

ROWS = {
    "inside a root": (PathPolicy(("/data/id00",), True), "/data/id00/s/f.h5", None),
    "the root itself is inside": (PathPolicy(("/data/id00",), True), "/data/id00", None),
    "a sibling with the root's name as prefix": (
        PathPolicy(("/data/id00",), True), "/data/id001/f.h5",
        (errno.EACCES, "'/data/id001/f.h5' is outside the writer's allowed roots (/data/id00; "
                       "see --allowed-root): not written")),
    "outside the roots, strict": (
        PathPolicy(("/data/id00", "/data/id01"), True), "/data/other/f.h5",
        (errno.EACCES, "'/data/other/f.h5' is outside the writer's allowed roots (/data/id00, /data/id01; "
                       "see --allowed-root): not written")),
    "outside the roots, lenient": (PathPolicy(("/data/id00",)), "/data/other/f.h5", None),
    "a system folder": (
        PathPolicy(), "/usr/share/f.h5",
        (errno.EACCES, "'/usr/share/f.h5' is in a system folder (/usr; give --allowed-root to write there): "
                       "not written")),
    "a system folder named as a root": (PathPolicy(("/var/data",), True), "/var/data/f.h5", None),
    "a hidden folder": (
        PathPolicy(), "/data/.trash/f.h5",
        (errno.EACCES, "'/data/.trash/f.h5' is in a hidden folder (give --allowed-root to write there): "
                       "not written")),
    "dot-dot out of a root": (
        PathPolicy(("/data/id00",), True), "/data/id00/../other/f.h5",
        (errno.EACCES, "'/data/other/f.h5' is outside the writer's allowed roots (/data/id00; "
                       "see --allowed-root): not written")),
    "relative": (PathPolicy(), "data/f.h5", (errno.EINVAL, "file path 'data/f.h5' is relative: refused")),
    "a NUL": (PathPolicy(), "/data/f\0.h5",
              (errno.EINVAL, "file path '/data/f\\x00.h5' holds a NUL character: nothing written")),
}


@pytest.mark.parametrize("policy, path, refused", ROWS.values(), ids=ROWS.keys())
def test_refusal(policy, path, refused):
    assert policy.refusal(path) == refused


def test_the_heartbeat_carries_the_writers_policy():
    config = WriterConfig(base_path="/data/base", allowed_roots=["/data/id00"])
    policy = config.path_policy()
    assert policy == PathPolicy(("/data/id00", "/data/base"), True)
    assert policy.to_dict() == {"allowed_roots": ["/data/id00", "/data/base"], "strict": True}
    assert PathPolicy.from_dict(policy.to_dict()) == policy
    assert WriterConfig(base_path="/data/base").path_policy() == PathPolicy(("/data/base",), False)


@pytest.mark.parametrize("published", [None, {}, "junk", {"allowed_roots": "/data", "strict": "yes"}])
def test_a_heartbeat_without_a_usable_policy_gives_the_default_rule(published):
    assert PathPolicy.from_dict(published) == PathPolicy((), False)


def test_relative_roots_in_a_heartbeat_are_dropped():
    assert PathPolicy.from_dict({"allowed_roots": ["rel", "/data", 3], "strict": True}) == \
        PathPolicy(("/data",), True)


def test_links_are_resolved(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "link").symlink_to(out)
    policy = PathPolicy((str(root),), True)
    assert policy.refusal(str(root / "link" / "f.h5")) == (
        errno.EACCES, f"'{root}/link/f.h5' is outside the writer's allowed roots ({os.path.realpath(root)}; "
                      f"see --allowed-root): not written")
