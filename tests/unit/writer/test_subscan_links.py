"""A sequence's links to its children (``writer/finishing.py``): a child in the same file is
waited for on the process's "entries created" condition, not polled; one in another file
is an external link. Tested with stand-ins for the file and the source (no Redis, no HDF5)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from nexus_writer_service.h5map import ExternalLink, SoftLink
from nexus_writer_service.kinds.sequence import ScanSequence
from nexus_writer_service.nxnodes import nx_class
from nexus_writer_service.writer import finishing
from nexus_writer_service.writer.recovery import Superseded

SCAN_FILE = "/data/session/data.h5"


class Source:
    def __init__(self, children: dict):
        self.children = children  # key -> (path, number)

    def child_path(self, key):
        return self.children[key]


def links(children: dict, entries: set, child_wait: float, check_claim=lambda: None):
    kind = ScanSequence(stream=None)  # (its stream's description is not read here)
    kind.children = [(key, number) for key, (_, number) in children.items()]
    plan = SimpleNamespace(subscan_streams=["seq"])
    handle = SimpleNamespace(lock=threading.RLock(), h5=entries)
    return finishing.subscan_links(Source(children), plan, {"seq": kind}, handle, SCAN_FILE, child_wait,
                                   check_claim)


def test_children_in_this_file_and_in_others():
    children = {"k:2": (SCAN_FILE, 2), "k:3": ("/data/session/scan0003/bliss_master.h5", 3),
                "k:4": ("/elsewhere/data.h5", 4), "k:5": (None, 5)}
    grp = links(children, {"2.1", "5.1"}, child_wait=0)
    assert nx_class(grp) == "NXcollection"
    assert grp.children == {
        "2.1": SoftLink(target_path="/2.1"),
        "3.1": ExternalLink(target_file="scan0003/bliss_master.h5", target_path="/3.1"),
        "4.1": ExternalLink(target_file="/elsewhere/data.h5", target_path="/4.1"),
        "5.1": SoftLink(target_path="/5.1"),  # no path of its own: in the sequence's file
    }


def test_a_child_still_running_is_waited_for_and_wakes_the_sequence_at_once():
    entries: set = set()

    def child():
        time.sleep(0.3)
        entries.add("2.1")
        finishing.entries_created()

    threading.Thread(target=child, daemon=True).start()
    started = time.monotonic()
    grp = links({"k:2": (SCAN_FILE, 2)}, entries, child_wait=30)
    waited = time.monotonic() - started
    assert grp.children == {"2.1": SoftLink(target_path="/2.1")}
    assert 0.3 <= waited < 0.9  # woken by the child, not by the once-a-second look


def test_a_child_that_never_comes_is_linked_after_child_wait():
    started = time.monotonic()
    grp = links({"k:2": (SCAN_FILE, 2)}, set(), child_wait=0.5)
    assert grp.children == {"2.1": SoftLink(target_path="/2.1")}  # (dangling until it comes)
    assert 0.5 <= time.monotonic() - started < 1.5


def test_a_lost_session_stops_the_wait():
    def lost():
        raise Superseded()

    with pytest.raises(Superseded):
        links({"k:2": (SCAN_FILE, 2)}, set(), child_wait=30, check_claim=lost)
