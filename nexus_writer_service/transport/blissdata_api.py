"""blissdata behind one adapter: every blissdata name this package uses, from here.

Supported: blissdata 2.0.x (BLISS 2.2), 2.3.x (BLISS 2.3) and 2.4.x (BLISS 2.4): the range
pyproject.toml declares (``>=2.0.1,<2.5``, without 2.1 and 2.2, which no BLISS release uses).
CI runs the writer's tests at both ends: in BLISS 2.2.1's own environment (blissdata 2.0.1)
and with blissdata 2.4.5 (scripts/test.sh).

Where the generations differ, each has its module, and this one picks it:

- ``blissdata_v2_0``: 2.0.x keeps exceptions, event streams and encoders under
  ``redis_engine`` and the stream classes in ``streams.base``;
- ``blissdata_v2_3``: 2.3.x and 2.4.x (``blissdata.exceptions``, ``streams.default``, ...);
- the plan's models (``blissdata.h5map``, absent from 2.0.x): ``nexus_writer_service.h5map``
  (a leaf module, as mapping, io and kinds use it).

The rest is where it always was (``redis_engine.store``, ``redis_engine.scan``, ``beacon.data``,
``streams.lima``) and is re-exported here all the same: no module of this package but this one,
the two generation modules and the leaves ``h5map`` and ``scaninfo_schema`` (blissdata's
scan_info schema, ``blissdata.schemas.scan_info``: pydantic types, no Redis, the same file in
every supported generation, read by the mapping) imports blissdata. The simulators import blissdata's
plugin packages (``blissdata_lima2``, ``blissdata_mosca``).

blissdata's public API does not give everything the writer needs (bounded multi-stream reads,
loading a scan without building plugin classes, decoding one stream's entries alone, a few
Redis reads blissdata makes privately). ``PRIVATE`` lists every private name we rely on, where,
and what for; tests/integration/test_blissdata_contract.py checks each one (present, same signature, same
behaviour) against the installed blissdata, so that a release that changes one fails there,
loudly, instead of in a beamline's files.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

import redis
from blissdata.beacon.data import BeaconData
from blissdata.redis_engine import scan as scan_module
from blissdata.redis_engine.scan import Scan, ScanState, scan_creation_stream
from blissdata.redis_engine.store import DataStore
from blissdata.streams.lima import LimaStream

try:
    VERSION = version("blissdata")
except PackageNotFoundError:  # a source checkout on sys.path: no metadata
    VERSION = "unknown"


def _release(text: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(p or 0) for p in match.groups()) if match else ()


#: (major, minor, micro) of the installed blissdata; () when unknown
RELEASE = _release(VERSION)
#: the range declared in pyproject.toml, as (lowest, first excluded) releases, gaps apart
SUPPORTED = ((2, 0, 1), (2, 5, 0))
EXCLUDED = ((2, 1), (2, 2))

if RELEASE:
    _OLD_LAYOUT = RELEASE[:2] < (2, 3)
else:  # no version: by layout (2.3 added blissdata.exceptions)
    from importlib.util import find_spec

    _OLD_LAYOUT = find_spec("blissdata.exceptions") is None
if _OLD_LAYOUT:
    from .blissdata_v2_0 import (
        BaseStream,
        BrokenPluginStream,
        Cursor,
        CursorGroup,
        EndOfStream,
        EventRange,
        EventStream,
        IndexNoMoreThereError,
        JsonStreamEncoder,
        MissingPluginStream,
        NoScanAvailable,
        NumericStreamEncoder,
        ScanLoadError,
        ScanNotFoundError,
        Stream,
        StreamDefinition,
        StreamEntry,
        View,
    )

    GENERATION = "2.0"
else:
    from .blissdata_v2_3 import (  # type: ignore[assignment]
        BaseStream,
        BrokenPluginStream,
        Cursor,
        CursorGroup,
        EndOfStream,
        EventRange,
        EventStream,
        IndexNoMoreThereError,
        JsonStreamEncoder,
        MissingPluginStream,
        NoScanAvailable,
        NumericStreamEncoder,
        ScanLoadError,
        ScanNotFoundError,
        Stream,
        StreamDefinition,
        StreamEntry,
        View,
    )

    GENERATION = "2.3"


def supported() -> bool:
    """True if the installed blissdata is in the declared (tested) range."""
    return (bool(RELEASE) and SUPPORTED[0] <= RELEASE < SUPPORTED[1]
            and RELEASE[:2] not in EXCLUDED)


def describe() -> str:
    """One line for a log: which blissdata, and whether it is a tested one."""
    note = "" if supported() else " (outside the tested range >=2.0.1,<2.5 without 2.1/2.2: may not work)"
    return f"blissdata {VERSION} (generation {GENERATION}){note}"


#: blissdata < 2 named a stream's plugin by ``info["format"]`` (blissdata maps them the same way)
LEGACY_FORMATS = {"lima_v1": "lima", "lima_v2": "lima2", "subscan": "scan_sequence"}


def plugin_name(info: dict) -> str | None:
    """The blissdata plugin a stream's info names, in either generation's naming."""
    plugin = info.get("plugin") or LEGACY_FORMATS.get(str(info.get("format", "")))
    return str(plugin) if plugin else None


def beacon_data(**kwargs) -> BeaconData:
    """blissdata's Beacon client: asked for the Redis URL when none is given."""
    return BeaconData(**kwargs)


# --- private blissdata, each use through here or listed below --------------------------------

def redis_client(ds: DataStore) -> redis.Redis:
    """The data store's own Redis client (``DataStore._redis``): reads blissdata makes privately
    (the scan document's JSON, stream keys, the scan-creation stream, the scan index)."""
    return ds._redis


#: blissdata's RediSearch index of scan identities (``DataStore.search_existing_scans`` queries
#: ``@id_<identity field>`` there); transport/identity.py queries it itself
SCAN_INDEX = "esrf:scan:index"
#: JSON paths of a scan document (redis-om's ``ScanModel``), read without redis-om
SCAN_DOC_INFO, SCAN_DOC_STREAMS = "$.info", "$.data_streams"


class Private(NamedTuple):
    """One private blissdata name we rely on."""

    #: a name of this module (a blissdata class or module), or "redis" for a Redis layout
    owner: str
    #: the private attribute, method or layout
    name: str
    #: "method" / "classmethod" (``params``: its parameters, checked), "attribute" (of
    #: instances: checked on live objects), "module attribute", "redis layout"
    kind: str
    #: our module(s) that rely on it
    where: str
    why: str
    params: tuple[str, ...] = ()


#: Every private blissdata name (and private Redis layout) this package relies on: the contract
#: tests (tests/integration/test_blissdata_contract.py) check every entry against the installed blissdata.
PRIVATE: tuple[Private, ...] = (
    # -- reading streams (transport/scans.py: ScanSource, BoundedCursorGroup) --
    Private("EventStream", "_decode_entries", "method", "transport/scans.py",
            "decodes the entries of one stream of a multi-stream read, before any cursor moves: "
            "wrapped per stream, a stream whose entries do not decode fails alone", ("self", "entries")),
    Private("StreamEntry", "length", "attribute", "transport/scans.py", "points an entry announces"),
    Private("StreamEntry", "is_seal", "attribute", "transport/scans.py", "the stream's seal entry"),
    Private("StreamEntry", "batch", "attribute", "transport/scans.py",
            "the entry's encoded batch; ``batch.payload``: its bytes (bounded reads learn entry sizes)"),
    Private("CursorGroup", "_active_cursors", "attribute", "transport/scans.py",
            "{stream key: Cursor} still read"),
    Private("CursorGroup", "_dead_cursors", "attribute", "transport/scans.py",
            "{stream key: Cursor} done (a dropped stream goes there)"),
    Private("CursorGroup", "_read_next_events_multi", "method", "transport/scans.py",
            "one XREAD of chosen cursors with our own count (bounded reads)",
            ("self", "cursors", "timeout", "count", "last_only_keys")),
    Private("CursorGroup", "_read_last_event_multi", "method", "transport/scans.py",
            "the newest event of status streams (last-only reads)", ("self", "cursors")),
    Private("CursorGroup", "_create_data_views", "method", "transport/scans.py",
            "event ranges to views; retires sealed cursors", ("self", "event_ranges", "last_only")),
    Private("Cursor", "_hl_stream", "attribute", "transport/scans.py", "the cursor's stream object"),
    Private("Cursor", "_ll_stream", "attribute", "transport/scans.py", "the cursor's EventStream"),
    Private("Cursor", "_ll_eos", "attribute", "transport/scans.py", "the seal was read"),
    Private("BaseStream", "_need_last_only", "method", "transport/scans.py",
            "overridden: CursorGroup.read reads such a stream's newest event only", ("self", "last_only")),
    Private("View", "_events", "attribute", "transport/scans.py",
            "the view's EventRange; ``nb_expired``: its points trimmed from Redis before the read"),
    # -- loading scans (transport/raw_scan.py), Redis reads blissdata makes privately --
    Private("DataStore", "_redis", "attribute", "transport/scans.py, transport/identity.py",
            "the store's Redis client: see redis_client()"),
    Private("DataStore", "_scan_model", "attribute", "transport/raw_scan.py",
            "the store's own redis-om scan model: its documents validated without redis-om's "
            "walks for datetime and bytes fields it has none of (see raw_scan.plain_documents)"),
    Private("Scan", "_load", "classmethod", "transport/raw_scan.py",
            "loads a scan as a subclass of Scan (DataStore.load_scan hard-codes Scan)",
            ("data_store", "key")),
    Private("Scan", "_wrap_event_stream", "method", "transport/raw_scan.py, simulation/replay.py",
            "the one place a stream's plugin class is made: overridden to keep raw event streams",
            ("self", "event_stream")),
    Private("redis", "FT index esrf:scan:index, fields id_session id_name id_number", "redis layout",
            "transport/identity.py", "the newest scan with an identifier (search_existing_scans "
            "cannot parse the RESP3 replies of redis-py 8)"),
    Private("redis", "scan document JSON $.info, $.data_streams", "redis layout", "transport/scans.py",
            "one JSON read tells whether a loaded scan is the final one"),
    Private("scan_module", "scan_creation_stream", "module attribute", "transport/scans.py",
            "the stream of created scans ({key: scan key}), read by ID for a time window"),
    # -- the simulators publish as BLISS does (tests, demo, benchmarks) --
    Private("scan_module", "discovered_plugins", "module attribute", "simulation/plugins.py",
            "{name: entry point} of stream plugins; hiding one for a test"),
    Private("scan_module", "loaded_plugins", "module attribute", "simulation/plugins.py",
            "{name: plugin module} already loaded; hiding one for a test"),
    Private("Scan", "_load_rw", "classmethod", "simulation/replay.py",
            "a publisher that resumes its scan after Redis restarted", ("data_store", "key")),
    Private("Scan", "_writer_streams", "attribute", "simulation/replay.py",
            "the publisher's streams, sealed by Scan.stop()"),
    Private("Scan", "json_info", "attribute", "simulation/replay.py",
            "the info blissdata compares at the next state change"),
    Private("EventStream", "_sink", "attribute", "simulation/replay.py",
            "a publisher's sender thread, stopped when the publisher 'dies'"),
)

__all__ = [
    "EXCLUDED", "GENERATION", "LEGACY_FORMATS", "PRIVATE", "RELEASE", "SCAN_DOC_INFO", "SCAN_DOC_STREAMS", "SCAN_INDEX",
    "SUPPORTED", "VERSION", "BaseStream", "BrokenPluginStream", "Cursor", "CursorGroup", "DataStore",
    "EndOfStream", "EventRange", "EventStream", "IndexNoMoreThereError", "JsonStreamEncoder",
    "MissingPluginStream", "NoScanAvailable", "NumericStreamEncoder", "Private", "Scan", "ScanLoadError",
    "ScanNotFoundError", "ScanState", "Stream", "StreamDefinition", "StreamEntry", "View", "BeaconData",
    "LimaStream", "beacon_data",
    "describe", "plugin_name", "redis_client", "scan_creation_stream", "scan_module", "supported",
]
