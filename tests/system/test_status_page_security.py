"""The status page and its secrets (issue 14 items 17, 18), in a headless browser.

A service runs on a private Redis that requires a password. What Redis holds is
shown escaped (HTML in a scan state never runs in the operator's browser), and the
password is never shown: not on the page, not in /status.json, not in the writers'
log, not on their command line (``ps``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import redis

from browser import chromium, get_text
from nexus_writer_service.simulation.redis_server import RedisServer
from nexus_writer_service.transport.status import StatusPublisher, StatusReader

PASSWORD = "s3cr3t-Pw-nxw"
INJECTED = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


@pytest.fixture
def private_redis():
    folder = tempfile.mkdtemp(prefix="nxw_pw_")  # short: unix socket path
    server = RedisServer(workdir=folder).start()
    redis.Redis.from_url(server.url).config_set("requirepass", PASSWORD)
    try:
        yield f"unix://:{PASSWORD}@{server.socket}", f"unix://:***@{server.socket}"
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_page_escapes_redis_content_and_hides_the_password(private_redis, tmp_path):
    url, shown = private_redis
    session = "page_sec"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_DATA_URL", "BEACON_HOST")}
    exe = os.path.join(os.path.dirname(sys.executable), "NexusWriterService")
    proc = subprocess.Popen([exe, "--session", session, "--redis-url", url, "--port", "0", "--log-dir", str(tmp_path / "logs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    console = []
    try:
        while not console or "status page on" not in console[-1]:
            console.append(proc.stdout.readline())
            assert console[-1], "".join(console)
        page = console[-1].split("status page on ")[1].strip()
        reader, deadline = StatusReader(url), time.monotonic() + 20
        while reader.writer(session) is None:
            assert time.monotonic() < deadline, "".join(console)
            time.sleep(0.1)
        child = reader.writer(session)["pid"]
        # a scan state as anyone with access to Redis can write it
        StatusPublisher(url, session).scan({
            "key": "esc:1", "number": "<b id='n'>1</b>", "name": INJECTED, "status": "<i id='st'>X</i>",
            "written": {"a": "<script>document.title='pwned'</script>"},
            "file": "<u id='file'>f</u>", "entries": ["<s id='entry'>1.1</s>"],
            "warnings": ["<em id='warn'>w</em>"], "error": "<script>document.title='pwned'</script>"})

        dom = chromium(page, tmp_path / "profile", "--dump-dom")
        text = dom.stdout
        assert "<h1>NeXus writers</h1>" in text, dom.stderr[-2000:]
        # nothing ran: the body has no attribute set by the image's onerror, the title is ours
        assert '<body data-pwned' not in text and "<title>NeXus writers</title>" in text
        for tag in ("<b id=", "<i id=", "<u id=", "<s id=", "<em id=", "<img", "<script>"):
            assert tag not in text, tag
        assert "&lt;img src=x onerror=" in text and "&lt;script&gt;document.title" in text
        # values of the wrong type (a number that is HTML, points that are text) are dropped
        # by the record's reader (records.read_record) before anything shows them
        assert "id='n'" not in text.replace("&#x27;", "'").replace("&#39;", "'")
        assert "id=&#x27;n&#x27;" not in text and "id=&#39;n&#39;" not in text

        status = get_text(page + "status.json")
        for where, content in (("page", text), ("status.json", status)):
            assert PASSWORD not in content, where
        assert json.loads(status)["redis_url"] == shown
        assert f"Redis: {shown}" in text

        # the child writer: no password on its command line, nor in its log
        args = open(f"/proc/{child}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        assert "session_writer" in args and PASSWORD not in args, args
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert PASSWORD not in ps
        log = (tmp_path / "logs" / f"{session}.log").read_text()
        assert f"listening for scans on {shown}" in log and PASSWORD not in log, log
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    console_text = "".join(console) + out
    assert PASSWORD not in console_text, console_text
    assert proc.returncode == 0, console_text
