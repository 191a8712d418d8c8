"""The completeness verdict: SUCCEEDED or INCOMPLETE, and the warnings that say why.

A scan is SUCCEEDED only when every point it published is in the file at its path:
that is the writer's core promise, so the rule lives here alone, as a function of
plain facts (no Redis, no HDF5), and every case of it is tested from a table
(``tests/unit/writer/test_verdict.py``). ``ScanWriter._finish`` gathers the facts
(from Redis, the file, the kinds) and writes what this decides.

Some facts are said elsewhere when they happen (a stop on request, a broken stream,
a file written again, the storage given up): they make the scan INCOMPLETE here
without a second warning. The rules are listed in the order their facts become
known at the end of a scan, so the warnings of a verdict on fewer facts are the
start of those of a verdict on more (``_finish`` says each one as soon as it is known).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Mapping, Protocol, Sequence

from ..states import INCOMPLETE, SUCCEEDED, UNCHECKED


class KindOutcome(Protocol):
    """What a kind that does not append (``kinds.Outcome``) says of its stream."""

    missing: int
    accounted: bool
    warnings: list


@dataclass(frozen=True)
class Facts:
    """What is known of a scan when it ends (plain data)."""

    #: the publisher closed the scan
    closed: bool
    #: stopped on request (stop_scan, said when it stopped): not being closed is not said again
    stopped: bool = False
    #: every stream was read to its end (False: given up: stalled, no room, stopped)
    complete: bool = True
    #: points in each growing dataset, by stream, in the file's order
    written: Mapping[str, int] = field(default_factory=dict)
    #: points published per stream: None when the stream is gone from Redis, ``UNCHECKED``
    #: when Redis could not say
    published: Mapping[str, int | None] = field(default_factory=dict)
    #: points trimmed from Redis before they were read, by stream
    lost: Mapping[str, int] = field(default_factory=dict)
    #: streams whose data could not be read as described (said when met)
    broken: Collection[str] = ()
    #: the planned growing datasets: (stream, where in the file)
    planned: Sequence[tuple[str, str]] = ()
    #: streams a kind took (written, referenced, or skipped with a warning)
    known: Collection[str] = ()
    #: what each kind that does not append says, by stream
    outcomes: Mapping[str, KindOutcome] = field(default_factory=dict)
    #: why the file was written again after it changed under the writer ("" if it was not)
    rewritten: str = ""
    #: room for the final tree was given up (the storage wait said so)
    no_room: bool = False
    #: the file moved while it was written: (its path, what happened, where it is now)
    moved: tuple[str, str, str] | None = None


def verdict(facts: Facts) -> tuple[str, list[str]]:
    """(SUCCEEDED or INCOMPLETE, the warnings this verdict adds, in order)."""
    f = facts
    warnings: list[str] = []
    ok = f.closed and f.complete and not f.lost and not f.broken and not f.rewritten
    if not f.closed and not f.stopped:
        warnings.append("the scan was never closed by its publisher")
    for name, n in f.written.items():
        if f.lost.get(name):
            warnings.append(f"{name}: {f.lost[name]} points trimmed from Redis before they were saved")
        published = f.published.get(name)
        if name in f.published and published is None:
            warnings.append(f"{name}: its data are gone from Redis (stream deleted or evicted): "
                            f"{n} points written")
            ok = False
        elif published == UNCHECKED:
            warnings.append(f"{name}: {n} points written; Redis could not say how many were published")
            ok = False
        elif n < (published or 0):
            warnings.append(f"{name}: {n} points written of {published} published")
            ok = False
    for stream, where in f.planned:  # e.g. a resumed entry where something else took its place
        if stream not in f.written:
            warnings.append(f"{stream}: not written (no growing dataset at {where})")
            ok = False
    # never complete without every published stream accounted for (written, referenced,
    # or skipped with a warning): a scan read too early shows fewer
    unknown = sorted(set(f.published) - set(f.known))
    if unknown:
        warnings.append(f"{len(unknown)} stream(s) published but not written: {', '.join(unknown[:5])}")
        ok = False
    for outcome in f.outcomes.values():
        warnings.extend(outcome.warnings)
        if outcome.missing or not outcome.accounted:
            ok = False
    if f.no_room:
        ok = False
    if f.moved is not None:  # the entries are complete where the file went: say where
        path, message, new_path = f.moved
        warnings.append(f"{path}: {message}: the scan's entries are in {new_path}")
        ok = False
    return (SUCCEEDED if ok else INCOMPLETE), warnings
