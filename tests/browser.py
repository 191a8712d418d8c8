"""The status page as an operator sees it: headless chromium, and the page's JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pytest


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser (scripts/setup.sh installs Debian's chromium when run as root)")


def chromium(url: str, profile, *args) -> subprocess.CompletedProcess:
    """Headless chromium on ``url`` with ``args`` (``--dump-dom``, ``--screenshot=...``)."""
    return subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={profile}", *args, url],
        capture_output=True, text=True, timeout=60)


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def get_json(url: str):
    return json.loads(get_text(url))


def wait(predicate, timeout: float = 20.0, period: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError("condition not met in time")
