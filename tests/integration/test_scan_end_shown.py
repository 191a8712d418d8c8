"""How a scan ended, beside how it was written (issue 20 item 4).

An ascan aborted at 5 of its 31 points is written whole (SUCCEEDED: every published point
is in the file): the writer's record says how it ended (``USER_ABORT``) and how far it got
(5 published), and the status page and ``nexus-writer status`` show both, the progress
measured against what was published, not against the 31 planned.
"""

from __future__ import annotations

import re

from nexus_writer_service.metadata.status import WriterStatus, format_status
from nexus_writer_service.records import read_record
from nexus_writer_service.service.web import render


def _page(*scans) -> str:
    return render({"redis_url": "redis://h", "sessions": {"s": {"heartbeat": {"pid": 1}, "scans": list(scans)}}})


def _row(page: str, number: int) -> list[str]:
    """The cells of one scan's row, as HTML."""
    row = re.search(rf"<tr><td>{number}</td>(.*?)</tr>", page).group(1)
    return re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + str(number) + "</td>" + row)


def test_an_aborted_scan_is_written_whole_and_says_it_was_aborted(harness):
    rec = harness.recording("21_ascan_abort")
    state = harness.state(harness.publish(rec))
    assert (state.status, state.end_reason, state.expected, state.published) == ("SUCCEEDED", "USER_ABORT", 31, 5)
    assert max(state.written.values()) == 5
    record = read_record(state.to_dict())
    page = _page(record)
    assert "<th>state</th><th>scan ended</th><th>points</th>" in page
    cells = _row(page, rec.number)
    assert cells[2:4] == ["SUCCEEDED", "USER_ABORT"]
    assert re.search(rf"<tr><td>{rec.number}</td><td>ascan</td><td class='SUCCEEDED'>SUCCEEDED</td>"
                     r"<td class='end-USER_ABORT'>USER_ABORT</td>", page)
    # the bar: full (5 of the 5 published), the 31 planned said beside it
    assert ("<div class='bar done' title='5 / 5'><div style='width:100.0%'></div><span>5 / 5</span></div>"
            "<span class='planned'>of 31 planned</span>") in page
    line = format_status(WriterStatus("s", {"pid": 1, "host": "h", "version": "v", "started": 0},
                                      [record])).splitlines()[1]
    assert line.split()[:5] == [str(rec.number), "ascan", "SUCCEEDED", "USER_ABORT", "5"]


def test_a_finished_scan_that_published_what_it_planned_shows_no_planned_note(harness):
    rec = harness.recording("03_ascan")
    state = harness.state(harness.publish(rec))
    assert (state.status, state.end_reason, state.expected, state.published) == ("SUCCEEDED", "SUCCESS", 6, 6)
    page = _page(read_record(state.to_dict()))
    assert "<td class='end-SUCCESS'>SUCCESS</td>" in page
    assert ("<div class='bar done' title='6 / 6'><div style='width:100.0%'></div><span>6 / 6</span></div>"
            "</td>") in page
    assert "planned" not in page.replace("planned{", "")  # the CSS rule only


def test_running_failed_and_incomplete_scans():
    page = _page(
        {"key": "a", "number": 1, "name": "ascan", "status": "WRITING", "written": {"x": 12}, "expected": 31},
        {"key": "b", "number": 2, "name": "ascan", "status": "SUCCEEDED", "written": {"x": 3}, "expected": 10,
         "end_reason": "FAILURE", "published": 3},
        {"key": "c", "number": 3, "name": "loopscan", "status": "INCOMPLETE", "written": {"x": 4}, "expected": 10,
         "end_reason": "SUCCESS", "published": 10},
        {"key": "d", "number": 4, "name": "timescan", "status": "SUCCEEDED", "written": {"x": 0}, "expected": None,
         "end_reason": "DEADLOCK", "published": 0},
        {"key": "e", "number": 5, "name": "<b>x</b>", "status": "FAILED", "error": "file refused"},
    )
    # running: against the points planned, no end yet
    assert _row(page, 1)[3:5] == ["running", "<div class='bar' title='12 / 31'><div style='width:38.7%'></div>"
                                             "<span>12 / 31</span></div>"]
    # failed at 3 of 10: all 3 published are written (a full bar), the 10 planned beside
    assert _row(page, 2)[3] == "FAILURE" and "<td class='end-other'>FAILURE</td>" in page
    assert ("<div class='bar done' title='3 / 3'><div style='width:100.0%'></div><span>3 / 3</span></div>"
            "<span class='planned'>of 10 planned</span>") in page
    # 4 of 10 published points written: the writer's state says INCOMPLETE, the bar 40 %
    assert ("<div class='bar' title='4 / 10'><div style='width:40.0%'></div><span>4 / 10</span></div></td>"
            in page)
    assert _row(page, 4)[3] == "DEADLOCK"
    assert "<div class='bar done' title='0 / 0'><div style='width:100.0%'></div>" in page
    # a scan the writer refused never ran here: no end reason to show
    assert _row(page, 5)[2:4] == ["FAILED", "-"] and "&lt;b&gt;x&lt;/b&gt;" in page
