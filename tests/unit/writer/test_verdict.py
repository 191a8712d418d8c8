"""The completeness verdict from tables, without Redis or HDF5: every rule of
``writer/verdict.py``, each row its facts and the exact status and warnings."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest

from nexus_writer_service.states import INCOMPLETE, SUCCEEDED, UNCHECKED
from nexus_writer_service.writer.verdict import Facts, verdict


@dataclass
class Said:
    """What a kind that does not append says (as ``kinds.Outcome``)."""

    missing: int = 0
    accounted: bool = True
    warnings: list = field(default_factory=list)


#: a scan read whole: two counters of 10 points, both published, both known
WHOLE = dict(closed=True, written={"a": 10, "b": 10}, published={"a": 10, "b": 10}, known={"a", "b"},
             planned=[("a", "1.1/instrument/a/data"), ("b", "1.1/instrument/b/data")])

ROWS = {
    "everything written": (WHOLE, SUCCEEDED, []),
    "nothing at all, closed": (dict(closed=True), SUCCEEDED, []),
    "never closed": ({**WHOLE, "closed": False}, INCOMPLETE,
                     ["the scan was never closed by its publisher"]),
    "stopped on request, not closed (said when it stopped)": (
        {**WHOLE, "closed": False, "stopped": True, "complete": False}, INCOMPLETE, []),
    "stopped on request after the close": ({**WHOLE, "stopped": True, "complete": False}, INCOMPLETE, []),
    "given up before the streams ended": ({**WHOLE, "complete": False}, INCOMPLETE, []),
    "points trimmed from Redis": (
        {**WHOLE, "lost": {"b": 3}}, INCOMPLETE,
        ["b: 3 points trimmed from Redis before they were saved"]),
    "points trimmed and the stream then gone": (
        {**WHOLE, "lost": {"a": 2}, "published": {"a": None, "b": 10}}, INCOMPLETE,
        ["a: 2 points trimmed from Redis before they were saved",
         "a: its data are gone from Redis (stream deleted or evicted): 10 points written"]),
    "a stream gone from Redis": (
        {**WHOLE, "published": {"a": 10, "b": None}}, INCOMPLETE,
        ["b: its data are gone from Redis (stream deleted or evicted): 10 points written"]),
    "Redis could not say": (
        {**WHOLE, "published": {"a": UNCHECKED, "b": 10}}, INCOMPLETE,
        ["a: 10 points written; Redis could not say how many were published"]),
    "fewer written than published": (
        {**WHOLE, "written": {"a": 10, "b": 7}, "published": {"a": 10, "b": 12}}, INCOMPLETE,
        ["b: 7 points written of 12 published"]),
    "more written than published (a resumed entry)": (
        {**WHOLE, "written": {"a": 11, "b": 10}}, SUCCEEDED, []),
    "a written stream Redis does not list": (
        {**WHOLE, "published": {"a": 10}}, SUCCEEDED, []),
    "a broken stream (said when read)": ({**WHOLE, "broken": {"a"}}, INCOMPLETE, []),
    "a planned dataset that is not growing": (
        {**WHOLE, "written": {"a": 10}}, INCOMPLETE,
        ["b: not written (no growing dataset at 1.1/instrument/b/data)"]),
    "published streams no kind took": (
        {**WHOLE, "published": {"a": 10, "b": 10, "z": 1, "y": 2, "x": 3, "w": 4, "v": 5, "u": 6}},
        INCOMPLETE, ["6 stream(s) published but not written: u, v, w, x, y"]),
    "a kind with everything": (
        {**WHOLE, "published": {"a": 10, "b": 10, "img": 5}, "known": {"a", "b", "img"},
         "outcomes": {"img": Said()}}, SUCCEEDED, []),
    "a kind with a warning only": (
        {**WHOLE, "outcomes": {"img": Said(warnings=["img: no master file: frames linked one by one"])}},
        SUCCEEDED, ["img: no master file: frames linked one by one"]),
    "a kind missing frames": (
        {**WHOLE, "outcomes": {"img": Said(missing=4, warnings=["img: 4 frames not in the files"])}},
        INCOMPLETE, ["img: 4 frames not in the files"]),
    "a kind that did not account for its stream": (
        {**WHOLE, "outcomes": {"img": Said(accounted=False)}}, INCOMPLETE, []),
    "the file written again after it changed (said then)": (
        {**WHOLE, "rewritten": "the file was deleted while it was written"}, INCOMPLETE, []),
    "no room for the final tree (the storage wait said it)": ({**WHOLE, "no_room": True}, INCOMPLETE, []),
    "the file moved": (
        {**WHOLE, "moved": ("/d/f.h5", "the file was moved to /e/f.h5 while it was written", "/e/f.h5")},
        INCOMPLETE, ["/d/f.h5: the file was moved to /e/f.h5 while it was written: "
                     "the scan's entries are in /e/f.h5"]),
    "everything wrong, in the order the facts become known": (
        dict(closed=False, written={"a": 5}, published={"a": 9, "k": 2, "q": 1}, lost={"a": 1},
             planned=[("a", "1.1/a"), ("c", "1.1/c")], known={"a", "k"},
             outcomes={"k": Said(missing=1, warnings=["k: 1 event missing"])}, no_room=True,
             moved=("/d/f.h5", "moved", "/e/f.h5")),
        INCOMPLETE,
        ["the scan was never closed by its publisher",
         "a: 1 points trimmed from Redis before they were saved",
         "a: 5 points written of 9 published",
         "c: not written (no growing dataset at 1.1/c)",
         "1 stream(s) published but not written: q",
         "k: 1 event missing",
         "/d/f.h5: moved: the scan's entries are in /e/f.h5"]),
}


@pytest.mark.parametrize("facts, status, warnings", ROWS.values(), ids=ROWS.keys())
def test_verdict(facts, status, warnings):
    assert verdict(Facts(**facts)) == (status, warnings)


def test_fewer_facts_give_the_start_of_the_warnings():
    """``ScanWriter._judge`` says each warning once its fact is known: a verdict on the
    facts known first must give the start of the final one's warnings."""
    full = Facts(**ROWS["everything wrong, in the order the facts become known"][0])
    _, final = verdict(full)
    streams_only = Facts(**{**full.__dict__, "outcomes": {}, "no_room": False, "moved": None})
    with_kinds = Facts(**{**full.__dict__, "no_room": False, "moved": None})
    assert verdict(streams_only)[1] == final[:5]
    assert verdict(with_kinds)[1] == final[:6]


def test_the_verdict_needs_neither_redis_nor_hdf5():
    import subprocess

    code = ("import sys; import nexus_writer_service.writer.verdict; "
            "print(sorted(m for m in ('h5py', 'redis', 'blissdata') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
