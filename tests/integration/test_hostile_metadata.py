"""User metadata HDF5 cannot take as it is: the scan is written, nothing merged (issue 14, 9)."""

from __future__ import annotations

import re

import copy

import numpy as np

from conftest import read_file
from nexus_writer_service.mapping.metadata import nxdict_to_group

LONG = "k" * 70_000


def _with_sample(rec, sample: dict):
    for attr in ("info_created", "info_prepared", "info_final"):
        info = copy.deepcopy(getattr(rec, attr))
        info["sample"] = {**info.get("sample", {}), **sample}
        setattr(rec, attr, info)
    return rec


def test_keys_that_clean_up_alike_stay_distinct():
    grp = nxdict_to_group({"a/b": 1, "a_b": 2, "a b": 3})
    values = sorted(int(c.value.root) for c in grp.children.values())
    assert values == [1, 2, 3] and len(grp.children) == 3


def test_a_very_long_key_is_shortened_with_a_warning_and_stays_distinct():
    warnings: list[str] = []
    grp = nxdict_to_group({LONG: 1, LONG + "x": 2}, warnings=warnings)
    assert len(grp.children) == 2 and all(len(n) <= 200 for n in grp.children)
    assert len(warnings) == 2 and "70000 characters" in warnings[0]


def test_attribute_names_keep_what_follows_a_nul():
    grp = nxdict_to_group({"energy": 7.0, "energy@un\x00its": "keV"})
    assert set(grp.children["energy"].attributes) == {"un\\x00its"}


def test_hostile_user_metadata_through_redis(harness):
    rec = _with_sample(harness.recording("19_ascan_usermeta", number=71),
                       {LONG: "long key", "a/b": 1.0, "a_b": 2.0, "note": "x" * 100_000})
    state = harness.state(harness.publish(rec))
    assert state.status == "SUCCEEDED", state
    with read_file(state.file) as f:
        sample = f["71.1/sample"]
        assert sample["name"][()] == b"LaB6"
        # "a/b" cannot be an HDF5 name: it becomes a_b, and the a_b already there keeps its own
        assert sorted(float(sample[k][()]) for k in ("a_b", "a_b_2")) == [1.0, 2.0]
        assert len(sample["note"][()]) == 100_000
        long_names = [k for k in sample if k.startswith("k")]
        assert len(long_names) == 1 and re.fullmatch(r"k{189}_[0-9a-f]{10}", long_names[0]), long_names
        assert sorted(sample) == sorted(["a_b", "a_b_2", "description", "name", "note", long_names[0]])
        assert state.warnings == [f"metadata key '{'k' * 40}'... (70000 characters) written as '{long_names[0]}'"]
        assert np.array_equal(f["71.1/measurement/robx"][()], rec.stream("axis:robx").data)


def test_an_empty_key_is_kept_under_a_name():
    # found by the fuzz test: {"": 1} failed the scan with KeyError
    grp = nxdict_to_group({"": 1, "x": 2, "@kind": "k"})
    assert sorted(grp.children) == ["unnamed", "x"] and "kind" in grp.attributes
