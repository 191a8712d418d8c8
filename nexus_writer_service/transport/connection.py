"""Where the scan data lives: the Redis data URL, as BLISS users configure it."""

from __future__ import annotations

import os

from blissdata.redis_engine.store import DataStore


def resolve_redis_url(url: str | None = None) -> str:
    """``--redis-url``, else ``REDIS_DATA_URL``, else ask Beacon (``BEACON_HOST``)."""
    if url:
        return url
    env = os.environ.get("REDIS_DATA_URL")
    if env:
        return env
    if os.environ.get("BEACON_HOST"):
        from blissdata.beacon.data import BeaconData

        return BeaconData().get_redis_data_db()
    raise RuntimeError(
        "no Redis data URL: give --redis-url, or set REDIS_DATA_URL, or BEACON_HOST for Beacon"
    )


def connect(url: str) -> DataStore:
    return DataStore(url)
