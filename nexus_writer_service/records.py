"""The two records the writer keeps of each scan, defined here only.

- the **scan record** (``ScanRecord``): what the writer says of a scan in Redis (the
  completeness protocol, ``transport/status.py`` stores it) and what BLISS, the status
  command, the service page and the Tango devices read back (``read_record``);
- the **writer note** (``NOTE``): the ``<entry>/writer`` NXnote in the file, written by
  the mapping (``mapping/layout.py``) and read back by a restarted writer
  (``io/notes.py``) to know whose entry it is and whether it is finished.

Readers get every field, with its type, whatever a writer of another version stored:
missing fields take their default, a value of the wrong type is dropped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .states import PENDING


@dataclass
class ScanRecord:
    """What the writer knows of one scan (its state in the completeness protocol)."""

    key: str
    name: str = ""
    number: int | None = None
    #: PENDING, WRITING, SUCCEEDED, FAILED, INCOMPLETE, SKIPPED (``states``)
    status: str = PENDING
    file: str | None = None
    entries: list[str] = field(default_factory=list)
    #: points (frames, events) in the file, per stream
    written: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    #: points the scan announces (scan_info ``npoints``; None: unknown or unbounded), for progress
    expected: int | None = None
    #: how the scan ended, as BLISS says (scan_info ``end_reason``: SUCCESS, USER_ABORT,
    #: FAILURE, ...); None while it runs
    end_reason: str | None = None
    #: points the scan published, once it ended (the most of any channel): progress is
    #: measured against it then (an aborted scan stops short of ``expected``)
    published: int | None = None
    #: epoch seconds: when the writer began writing the scan, and when it finished it
    started: float | None = None
    ended: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


#: fields the store adds when it publishes a record
STORE_FIELDS = {"session": str, "updated": float}

_TYPES = {"key": str, "name": str, "number": int, "status": str, "file": str, "entries": list,
          "written": dict, "warnings": list, "error": str, "expected": int, "end_reason": str,
          "published": int, "started": float, "ended": float, **STORE_FIELDS}


def read_record(raw: str | bytes | dict | None) -> dict | None:
    """A stored scan record as a dict with every field (None if there is none)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else dict(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return None
    out: dict[str, Any] = {}
    defaults = {f.name: (f.default_factory() if callable(f.default_factory) else f.default)  # type: ignore[misc]
                for f in fields(ScanRecord) if f.name != "key"}
    defaults.update({name: None for name in STORE_FIELDS})
    for name, default in {"key": None, **defaults}.items():
        value = data.get(name, default)
        kind = _TYPES[name]
        if value is not None and not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            value = default
        if kind is int and isinstance(value, bool):
            value = default
        out[name] = value
    out["written"] = {str(k): int(v) for k, v in out["written"].items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["entries"] = [str(e) for e in out["entries"]]
    out["warnings"] = [str(w) for w in out["warnings"]]
    return out


def points(record: dict) -> int:
    """The most points written in any stream of the scan (what a person calls its points)."""
    return max((record.get("written") or {}).values(), default=0)


@dataclass(frozen=True)
class NoteFields:
    """Names of the items of ``<entry>/writer``."""

    status: str = "status"
    #: the Redis key of the scan the entry belongs to (a restarted writer resumes only its own)
    scan_key: str = "scan_key"
    writer: str = "writer"
    writer_version: str = "writer_version"
    type: str = "type"
    date: str = "date"
    #: points written per channel (NXcollection of fields, named by measurement name)
    points: str = "points"
    warnings: str = "warnings"
    error: str = "error"
    #: HDF5 filter plugins a reader needs for this entry's data ("none" if any reader will do)
    required_filter_plugins: str = "required_filter_plugins"


NOTE = NoteFields()
#: the note's group name below the entry
NOTE_GROUP = "writer"

__all__ = ["ScanRecord", "read_record", "points", "NOTE", "NOTE_GROUP", "STORE_FIELDS"]
