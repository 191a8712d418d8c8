"""One session's writer as its Tango devices see it: the completeness protocol in
Redis (``transport/status.py``) plus the scans' identities (``transport/identity.py``).

No Tango here. Every answer is read when asked: a device never keeps a state of
its own that could drift from what the writer published.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from ..io.path_policy import PathPolicy
from ..states import FAILED, FINAL_STATES, INCOMPLETE
from ..transport.blissdata_api import beacon_data
from ..transport.connection import connect, resolve_redis_url
from ..transport.identity import ScanIdentity, newest_scan_key, scan_identity
from ..transport.status import StatusReader
from . import checks, hosting

#: scans the attributes (recent scans, counts) look at
RECENT_WINDOW = 200
#: scans the device state looks at for unfinished ones (RUNNING): BLISS asks it every scan
ACTIVE_WINDOW = 20


def redis_url_for(redis_url: str = "", beacon_host: str = "") -> str:
    """Where the session's scans (and the writer's state) are: the device property
    ``redis_url``, else the hosting service's, else asked from the device's ``beacon_host``,
    else ``$REDIS_DATA_URL`` / ``$BEACON_HOST``."""
    if redis_url:
        return redis_url
    ctl = hosting.control()
    if ctl is not None and ctl.redis_url:
        return ctl.redis_url
    if beacon_host:
        host, _, port = beacon_host.rpartition(":")
        return beacon_data(host=host or "localhost", port=int(port)).get_redis_data_db()
    return resolve_redis_url(None)


def open_view(session: str, redis_url: str = "", beacon_host: str = "") -> tuple["SessionView | None", str]:
    """(view, "") or (None, why not): a device without one stays up, in FAULT, saying why."""
    if not session:
        return None, "the device property 'session' is not set (RegisterNexusWriter sets it)"
    try:
        return SessionView(session, redis_url_for(redis_url, beacon_host)), ""
    except Exception as exc:
        return None, f"cannot find the Redis data URL of session {session!r}: {exc}"


class SessionView:
    def __init__(self, session: str, redis_url: str):
        self.session = session
        self.redis_url = redis_url
        self.reader = StatusReader(redis_url)
        self._ds = None
        self._lock = threading.Lock()
        self._identities: OrderedDict[str, ScanIdentity] = OrderedDict()

    # -- the session writer --------------------------------------------------
    def heartbeat(self) -> dict | None:
        return self.reader.writer(self.session)

    def path_policy(self) -> PathPolicy:
        """Where the session's writer may write, as its heartbeat says (the default rule
        when no writer beats: the one a writer started without ``--allowed-root`` applies)."""
        return PathPolicy.from_dict((self.heartbeat() or {}).get("paths"))

    def state(self) -> tuple[str, str]:
        """(Tango state name, status text) of the session's writer."""
        ctl = hosting.control()
        process = ctl.process(self.session) if ctl is not None else None
        active = 0
        try:
            heartbeat, error = self.heartbeat(), ""
            if heartbeat is not None:
                active = sum(r.get("status") not in FINAL_STATES for r in self.recent(ACTIVE_WINDOW))
        except Exception as exc:  # Redis away: say so, do not fail the call
            heartbeat, error = None, f"Redis {self.redis_url}: {exc}"
        return checks.session_state(heartbeat, not hosting.stopped(self.session), process, error, active)

    def recent(self, count: int = RECENT_WINDOW) -> list[dict]:
        return self.reader.recent(self.session, count)

    def counts(self) -> dict[str, int]:
        out = {"failed": 0, "incomplete": 0, "active": 0}
        for record in self.recent():
            status = record.get("status")
            out["failed"] += status == FAILED
            out["incomplete"] += status == INCOMPLETE
            out["active"] += status not in FINAL_STATES
        return out

    # -- one scan ------------------------------------------------------------
    def record(self, key: str | None) -> dict | None:
        return self.reader.scan(key) if key else None

    def key_of(self, identifier: str) -> str | None:
        """The scan BLISS 2.2.1 means by ``scan.identifier`` (``"2_ascan"``)."""
        parsed = checks.parse_identifier(identifier)
        if parsed is None:
            return None
        return newest_scan_key(self._store(), self.session, *parsed)

    def identity(self, key: str) -> ScanIdentity | None:
        with self._lock:
            known = self._identities.get(key)
        if known is not None:
            return known
        found = scan_identity(self._store(), key)
        if found is not None:
            with self._lock:
                self._identities[key] = found
                while len(self._identities) > RECENT_WINDOW:
                    self._identities.popitem(last=False)
        return found

    def target_file(self, key: str | None, record: dict | None = None) -> str | None:
        """The file the writer writes (its record), else the one BLISS names."""
        if key is None:
            return None
        record = record if record is not None else self.record(key)
        if record and record.get("file"):
            return os.path.abspath(record["file"])
        identity = self.identity(key)
        return os.path.abspath(identity.path) if identity and identity.path else None

    def _store(self):
        with self._lock:
            if self._ds is None:
                self._ds = connect(self.redis_url)
            return self._ds
