"""The two records the writer keeps of each scan, defined here only.

- the **scan record** (``ScanRecord``): what the writer says of a scan in Redis (the
  completeness protocol, ``transport/status.py`` stores it) and what BLISS, the status
  command, the service page and the Tango devices read back (``read_record``);
- the **writer note** (``NOTE``): the ``<entry>/writer`` NXnote in the file, written by
  the mapping (``mapping/layout.py``) and read back by a restarted writer
  (``io/notes.py``) to know whose entry it is and whether it is finished.

Readers get every field, with its type, whatever a writer of another version stored: the
stored record is validated by pydantic (``StoredRecord``, strict types); missing fields
take their default, a value of the wrong type is dropped (an item of a list or mapping
alone), fields it does not know are ignored, and a record that is no JSON object or has
no string ``key`` is no record (None). Each is said once in the log, never raised.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .states import PENDING

_logger = logging.getLogger(__name__)

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


def _stored_model() -> type[BaseModel]:
    """The pydantic model of a stored record, from ``ScanRecord``'s fields (one definition)
    and the store's; strict: a number that is text, a bool that is a count, are wrong types
    (a float field takes an int: JSON writes 1.0 as 1)."""
    hints = get_type_hints(ScanRecord)
    spec: dict[str, Any] = {}
    for f in fields(ScanRecord):
        if f.default is not MISSING:
            spec[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not MISSING:
            spec[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            spec[f.name] = (hints[f.name], ...)
    spec.update({name: (kind | None, None) for name, kind in STORE_FIELDS.items()})
    return create_model("StoredRecord", __config__=ConfigDict(strict=True), **spec)


#: the scan record as stored in Redis: the store adds who published it and when
StoredRecord = _stored_model()
_FIELDS = frozenset(StoredRecord.model_fields)
#: a bad record is said once (readers poll the same records every second)
_SAID: OrderedDict = OrderedDict()
_SAY_AT_MOST = 1000
#: passes of dropping wrong values (each drops every one pydantic reports)
_PASSES = 4


def _say(what: str, raw: Any) -> None:
    text = f"scan record {what}: {str(raw)[:200]!r}"
    if text in _SAID:
        return
    _SAID[text] = None
    while len(_SAID) > _SAY_AT_MOST:
        _SAID.popitem(last=False)
    _logger.warning(text)


def read_record(raw: str | bytes | dict | None) -> dict | None:
    """A stored scan record as a dict with every field (None if there is none)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else dict(raw)
    except (ValueError, TypeError):
        _say("ignored (not JSON)", raw)
        return None
    if not isinstance(data, dict):
        _say("ignored (not a JSON object)", raw)
        return None
    known = {name: value for name, value in data.items() if name in _FIELDS}
    dropped: list[str] = []
    for _ in range(_PASSES):
        try:
            record = StoredRecord.model_validate(known)
            break
        except ValidationError as exc:
            problems = [error["loc"] for error in exc.errors()]
        if any(not loc or loc[0] == "key" for loc in problems):
            _say("ignored (no string key: not a record of this writer)", raw)
            return None
        for loc in problems:
            dropped.append(".".join(str(part) for part in loc))
            _drop(known, loc)
        for name, value in known.items():  # list items dropped at once: later indexes held
            if isinstance(value, list):
                known[name] = [item for item in value if item is not _DROPPED]
    else:
        _say("ignored (its values cannot be read)", raw)
        return None
    out = record.model_dump()
    if dropped:
        _say(f"{out['key']}: values of the wrong type dropped ({', '.join(dropped)})", raw)
    return out


_DROPPED = object()


def _drop(data: dict, loc: tuple) -> None:
    """The wrong value at ``loc``: the item of a list or mapping, else the whole field."""
    name = loc[0]
    value = data.get(name)
    if len(loc) > 1 and isinstance(value, dict) and loc[1] in value:
        data[name] = {k: v for k, v in value.items() if k != loc[1]}
    elif len(loc) > 1 and isinstance(value, list) and isinstance(loc[1], int) and loc[1] < len(value):
        data[name] = value[:loc[1]] + [_DROPPED] + value[loc[1] + 1:]
    else:
        data.pop(name, None)


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
