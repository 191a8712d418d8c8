"""Which scan BLISS means, and where it asks for it to be written: the scan identity.

The Tango devices (``nexus_writer_service/tango``) get from BLISS either a scan key
(2.4 'mapping' mode) or only ``scan.identifier`` (2.2.1 'nexus' mode: ``"2_ascan"``, the
identity's number and name). Identifiers repeat (numbers restart in every data file),
so the scan meant is the newest one of the session with that number and name, found
with blissdata's own search over identities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.commands.search.query import Query

from .blissdata_api import SCAN_INDEX, DataStore, ScanLoadError, redis_client


@dataclass(frozen=True)
class ScanIdentity:
    key: str
    session: str | None
    name: str | None
    number: int | None
    #: the file BLISS names (identity ``path``, else scan_info ``filename``, else the one
    #: our session-side generators published): where the writer will write
    path: str | None


#: RediSearch special characters, escaped as blissdata's own search does
_ESCAPE = str.maketrans({c: f"\\{c}" for c in ",.<>{}[]\"':;!@#$%^&()-+=~?/ *"})


def newest_scan_key(ds: DataStore, session: str, number: int, name: str) -> str | None:
    """The newest scan of ``session`` whose identity has this number and name.

    The same index query as blissdata's ``search_existing_scans``, which cannot parse
    the reply of redis-py 8 (RESP3 maps; see ``transport/scans.py: scans_since``): both
    reply shapes are read here. blissdata keys end with a ULID, so their order is
    their creation order.
    """
    query = (f"@id_session:{{{session.translate(_ESCAPE)}}} @id_name:{{{name.translate(_ESCAPE)}}} "
             f"@id_number:[{int(number)} {int(number)}]")
    #: its shape depends on the protocol and on redis-py's version (read below)
    reply: Any = redis_client(ds).ft(SCAN_INDEX).search(Query(query).paging(0, 1000).no_content())
    if isinstance(reply, dict):  # RESP3
        results = reply.get(b"results") or reply.get("results") or []
        keys = [_text(r.get(b"id", r.get("id"))) for r in results]
    elif hasattr(reply, "docs"):  # redis-py's parsed RESP2 Result
        keys = [_text(d.id) for d in reply.docs]
    else:  # raw RESP2: [count, key, key, ...]
        keys = [_text(k) for k in reply[1:]]
    return max(keys) if keys else None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def scan_identity(ds: DataStore, key: str) -> ScanIdentity | None:
    """The identity of scan ``key`` (None when it is not, or no longer, in Redis)."""
    try:
        scan = ds.load_scan(key)
    except (ScanLoadError, RuntimeError):
        return None
    path = getattr(scan, "path", None)
    if not path:
        info = scan.info or {}
        path = info.get("filename") or (info.get("nexuswriter") or {}).get("filename")
    return ScanIdentity(key, getattr(scan, "session", None), getattr(scan, "name", None),
                        getattr(scan, "number", None), path or None)
