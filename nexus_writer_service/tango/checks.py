"""What the Tango devices answer, as plain functions of the writer's published state.

No Tango and no Redis here: the devices (``nexus_writer.py``, ``bliss_writer.py``)
read the completeness protocol (``transport/status.py``) and turn what they read
into Tango states with these functions, so the rules are tested without a server.

States are returned by name ("ON", "FAULT", ...); the devices convert them to
``tango.DevState``.
"""

from __future__ import annotations

import os
import time

from .. import states as S
# one free-space rule for the device and the writer (the device refuses what the writer would stop on)
from ..io.space import existing_folder, free_mb
# one path rule for the device and the writer (the device refuses what the writer would FAIL)
from ..io.path_policy import PathPolicy

#: a session writer that started less than this long ago may not have beaten yet
STARTING_GRACE_S = 30.0


def parse_identifier(identifier: str) -> tuple[int, str] | None:
    """``"2_ascan"`` -> ``(2, "ascan")``: BLISS 2.2.1's ``scan.identifier`` is
    ``f"{number}_{name}"`` (the name may hold underscores, the number never does)."""
    number, sep, name = identifier.partition("_")
    if not sep or not name or not number.isdigit():
        return None
    return int(number), name


def nexus_scan_state(record: dict | None) -> tuple[str, str]:
    """(state, reason) of one scan for the ``NexusWriter`` device (BLISS's 'nexus' mode).

    BLISS 2.2.1 raises on FAULT (and shows the reason) and waits for OFF when it waits
    at all; ON means being written, INIT seen but not started, UNKNOWN never seen.
    """
    if record is None:
        return "UNKNOWN", "the writer has not seen this scan"
    status = record.get("status")
    if status == S.FAILED:
        return "FAULT", record.get("error") or "the writer failed this scan"
    if status == S.PENDING:
        return "INIT", "seen by the writer, waiting for BLISS to prepare it"
    if status == S.WRITING:
        return "ON", f"writing {record.get('file') or ''}".strip()
    if status in S.FINAL_STATES:
        return "OFF", _final_reason(record)
    return "UNKNOWN", f"unknown writer status {status!r}"


def mapping_scan_state(record: dict | None, requested: bool, refusal: str = "") -> tuple[str, str]:
    """(state, reason) for the ``BlissWriter`` device (BLISS 2.4's 'mapping' mode).

    BLISS 2.4 waits for ON right after ``SaveScan``, while its scan is still being
    prepared: like blisswriter 3, ON means "accepted and checked, will be written",
    which for our writer is PENDING as well as WRITING. ``refusal``: why the pre-checks
    (folder writable, disk space) refuse the scan.
    """
    if refusal:
        return "FAULT", refusal
    if record is None:
        return ("INIT", "requested, not yet seen by the writer") if requested else (
            "UNKNOWN", "neither requested nor seen by the writer")
    status = record.get("status")
    if status == S.FAILED:
        return "FAULT", record.get("error") or "the writer failed this scan"
    if status in (S.PENDING, S.WRITING):
        return "ON", f"writing {record.get('file') or ''}".strip()
    if status in S.FINAL_STATES:
        return "OFF", _final_reason(record)
    return "UNKNOWN", f"unknown writer status {status!r}"


def _final_reason(record: dict) -> str:
    status = record.get("status")
    points = max((record.get("written") or {}).values(), default=0)
    text = f"{status}: {points} points in {record.get('file') or '-'}"
    warnings = record.get("warnings") or []
    if warnings:
        text += f" ({len(warnings)} warning(s): {warnings[0]})"
    return text


def session_state(heartbeat: dict | None, accepting: bool, process: dict | None = None,
                  error: str = "", active: int = 0) -> tuple[str, str]:
    """(state, status text) of a session's device.

    ``heartbeat``: the writer's, from Redis (None: none alive); ``accepting``: False after
    the Stop command; ``process``: what the hosting service knows of the writer process
    (``running``, ``pid``, ``uptime``, ``last_exit``, ``restarts``, ``log``, ``stopping``) or None when
    the device is not hosted by it; ``error``: Redis could not be asked; ``active``: scans
    of the session seen and not finished (RUNNING instead of ON, as ESRF's device says
    while it writes; BLISS accepts both).
    """
    if not accepting:
        return "OFF", "stopped by the Stop command: scans are refused until Start"
    if error:
        return "FAULT", f"cannot read the writer's state: {error}"
    if process is not None and process.get("stopping"):
        return "INIT", (f"session writer stopping (pid {process.get('pid')}, after the Stop command); "
                        "it starts again once stopped")
    if heartbeat is not None and process is not None and process.get("running") \
            and heartbeat.get("pid") != process.get("pid"):
        return "INIT", (f"session writer starting (pid {process.get('pid')}); the previous one "
                        f"(pid {heartbeat.get('pid')}) still beats")
    if heartbeat is not None:
        up = max(0.0, time.time() - float(heartbeat.get("started") or time.time()))
        text = (f"session writer alive (pid {heartbeat.get('pid')} on {heartbeat.get('host')}, "
                f"version {heartbeat.get('version')}, up {up:.0f} s)")
        if active:
            return "RUNNING", f"{text}, writing {active} scan(s)"
        return "ON", text
    if process is not None and process.get("running") and process.get("uptime", 0.0) < STARTING_GRACE_S:
        return "INIT", f"session writer starting (pid {process.get('pid')})"
    text = "no session writer alive for this session (no heartbeat in Redis)"
    if process is not None:
        if process.get("running"):
            text += f"; its process (pid {process.get('pid')}) runs but does not beat"
        elif process.get("last_exit") is not None:
            text += (f"; its process exited with code {process['last_exit']} "
                     f"({process.get('restarts', 0)} restart(s))")
        if process.get("log"):
            text += f"; log: {process['log']}"
    return "FAULT", text


def write_refusal(path: str | None, policy: PathPolicy = PathPolicy()) -> str:
    """Why the writer may not write ``path`` (empty when it may).

    First the writer's own rule, in its words (``policy``: the roots it published in its
    heartbeat; without, the default rule): the device must not approve a scan that the
    writer then FAILS. Then the permissions, checked with this process's own user, as the
    writer (same user, same host) would: an existing file must be writable; otherwise the
    nearest existing folder must let us create entries (write + search). ``os.access``
    honours ACLs, read-only mounts and immutable folders, which a root user's mode bits
    would not show.
    """
    if not path:
        return "no file is known for this scan"
    refused = policy.refusal(path)
    if refused is not None:
        return refused[1]
    path = os.path.abspath(path)
    if os.path.exists(path):
        if os.path.isdir(path):
            return f"{path} is a folder, not a file"
        if not os.access(path, os.W_OK):
            return f"{path} exists and is not writable by user {_user()}"
        return ""
    folder = existing_folder(path)
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is not writable by user {_user()} (for {path})"
    blocker = os.path.dirname(path)
    while blocker != folder and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if blocker != folder:  # a file where a folder should be
        return f"{blocker} is not a folder (for {path})"
    return ""


def disk_space_message(path: str | None, threshold_mb: float, what: str) -> str:
    """A text when the disk of ``path`` has less than ``threshold_mb`` free (else empty).

    ``what`` names the device property, so the message says what to change."""
    if not path or threshold_mb <= 0:
        return ""
    try:
        free = free_mb(path)
    except OSError as exc:
        return f"cannot check the free disk space for {path}: {exc}"
    if free >= threshold_mb:
        return ""
    return (f"Free disk space below {threshold_mb:.0f} MB for {path}: {free:.0f} MB free "
            f"on {existing_folder(path)} (device property {what})")


def _user() -> str:
    try:
        import pwd  # Unix only

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())
