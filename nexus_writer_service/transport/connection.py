"""Where the scan data lives: the Redis data URL, as BLISS users configure it."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .blissdata_api import DataStore, beacon_data
from .raw_scan import RawDataStore


class BeaconUnreachable(RuntimeError):
    """``BEACON_HOST`` names no Beacon that answers."""


def resolve_redis_url(url: str | None = None) -> str:
    """``--redis-url``, else ``REDIS_DATA_URL``, else ask Beacon (``BEACON_HOST``)."""
    if url:
        return url
    env = os.environ.get("REDIS_DATA_URL")
    if env:
        return env
    beacon = os.environ.get("BEACON_HOST")
    if beacon:
        try:
            return beacon_data().get_redis_data_db()
        except Exception as exc:  # refused, unknown host, bad address: say whom we asked
            raise BeaconUnreachable(
                f"cannot ask Beacon at BEACON_HOST={beacon} for the Redis data URL "
                f"({type(exc).__name__}: {exc}); is Beacon running there? (or give --redis-url)"
            ) from None
    raise RuntimeError(
        "no Redis data URL: give --redis-url, or set REDIS_DATA_URL, or BEACON_HOST for Beacon"
    )


_SECRET_QUERY = {"password", "pass", "passwd", "secret", "token"}


def redact_url(url: str | None) -> str:
    """The URL with any password replaced by ``***`` (user info and ``?password=``).

    For logs, the status page and /status.json: those are read by people who must
    not learn the Redis password.
    """
    if not url:
        return url or ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r":[^:@/]*@", ":***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        elif userinfo:  # redis://secret@host: redis-py reads a lone user name as password-less;
            userinfo = "***"  # others read it as the password: hide it too
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY else v) for k, v in pairs], safe="*/")
    if "://" not in url:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def connect(url: str) -> DataStore:
    """The writer's blissdata client: scans load without their plugins' stream classes."""
    return RawDataStore(url)
