"""Asking, from the BLISS session, whether the writer is alive and what it did.

Runs inside BLISS: it needs only the data Redis URL, which BLISS processes know
through Beacon (``BEACON_HOST``) or ``REDIS_DATA_URL``.
"""

from __future__ import annotations

from .. import records

import time
from dataclasses import dataclass, field

from ..states import FINAL_STATES
from ..transport.connection import resolve_redis_url
from ..transport.status import StatusReader


@dataclass
class WriterStatus:
    session: str
    writer: dict | None
    scans: list[dict] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.writer is not None

    def __str__(self) -> str:
        return format_status(self)


def format_status(status: WriterStatus) -> str:
    if status.alive:
        w = status.writer
        up = time.time() - w.get("started", time.time())
        head = (f"session {status.session}: writer alive (pid {w.get('pid')} on {w.get('host')}, "
                f"version {w.get('version')}, up {up / 60:.0f} min)")
    else:
        head = f"session {status.session}: NO WRITER ALIVE - scans are not being saved"
    lines = [head]
    for s in status.scans:
        points = records.points(s)
        where = f"{s.get('file') or '-'} {','.join(s.get('entries') or [])}"
        # how the scan ended beside how it was written (an aborted scan can be SUCCEEDED)
        ended = s.get("end_reason") or ("running" if s.get("status") in ("PENDING", "WRITING") else "-")
        line = (f"  {s.get('number')!s:>5} {s.get('name', '')[:14]:14} {s.get('status', '?'):10} "
                f"{ended:10} {points:6d} pts  {where}")
        if s.get("error"):
            line += f"  error: {s['error']}"
        elif s.get("warnings"):
            line += f"  ({len(s['warnings'])} warnings: {s['warnings'][0]})"
        lines.append(line)
    return "\n".join(lines)


def _session_name(session: str | None) -> str:
    if session:
        return session
    try:
        from bliss import current_session  # optional: BLISS (inside a BLISS session only)
    except ImportError as e:
        raise RuntimeError("give the session name (BLISS is not available here)") from e
    return current_session.name


def writer_status(session: str | None = None, redis_url: str | None = None, count: int = 10) -> WriterStatus:
    """Is a writer alive for this session, and what happened to its last scans?"""
    name = _session_name(session)
    reader = StatusReader(resolve_redis_url(redis_url))
    return WriterStatus(name, reader.writer(name), reader.recent(name, count) if count > 0 else [])


def scan_key(scan) -> str:
    """The Redis key of a scan: a key, a blissdata scan, or a BLISS scan object."""
    if isinstance(scan, str):
        return scan
    for path in ("key", "_scan_data.key", "scan_data.key"):
        obj = scan
        try:
            for attr in path.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        if isinstance(obj, str):
            return obj
    raise TypeError(f"cannot find the Redis key of {scan!r}")


def wait_for_writer(scan, timeout: float = 60.0, redis_url: str | None = None) -> dict | None:
    """Wait until the writer finished ``scan``; returns its final state (None: writer never saw it).

    Raises TimeoutError when the scan is still being written after ``timeout``.
    """
    state = StatusReader(resolve_redis_url(redis_url)).wait(scan_key(scan), timeout)
    if state is not None and state.get("status") not in FINAL_STATES:
        raise TimeoutError(f"scan {state.get('number')} still {state.get('status')} after {timeout} s")
    return state
