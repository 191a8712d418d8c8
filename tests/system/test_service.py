"""NexusWriterService: several sessions, supervised, with a status page."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from browser import chromium, get_json, wait
from nexus_writer_service.apps.service import ConfigError, _port, load_config, session_specs
from nexus_writer_service.simulation.recording import load_recording, relocate
from nexus_writer_service.simulation.replay import publish
from conftest import start_service


@pytest.fixture
def service(redis_server, tmp_path):
    config = tmp_path / "service.yml"
    config.write_text(f"sessions:\n  - svc_a\n  - name: svc_b\n    args: ['--base-path', '{tmp_path}/b']\n"
                      f"log_dir: {tmp_path}/logs\n")
    proc, url = start_service("--config", str(config), "--redis-url", redis_server.url)
    yield url, tmp_path
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == 0


def test_service_restarts_a_killed_session_writer(service, redis_server):
    url, tmp_path = service
    status = wait(lambda: (s := get_json(url + "status.json"))
                   and all(v["heartbeat"] for v in s["sessions"].values()) and s)
    assert set(status["sessions"]) == {"svc_a", "svc_b"}
    old_pid = status["sessions"]["svc_b"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    status = wait(lambda: (s := get_json(url + "status.json"))["sessions"]["svc_b"]["pid"] not in (None, old_pid)
                   and s["sessions"]["svc_b"]["heartbeat"] and s)
    assert time.monotonic() - killed_at < 10  # back within seconds
    b = status["sessions"]["svc_b"]
    assert b["restarts"] == 1 and b["last_exit"] == -signal.SIGKILL
    assert status["sessions"]["svc_a"]["restarts"] == 0
    # the restarted writer writes: a scan of session svc_b lands under its base path
    from blissdata.redis_engine.store import DataStore

    publish(DataStore(redis_server.url), relocate(load_recording("33_null_ascan"), tmp_path, session="svc_b"))
    status = wait(lambda: (s := get_json(url + "status.json"))["sessions"]["svc_b"]["scans"]
                   and s["sessions"]["svc_b"]["scans"][0]["status"] == "SUCCEEDED" and s)
    scan = status["sessions"]["svc_b"]["scans"][0]
    assert scan["file"] == f"{tmp_path}/b/svc_b/svc_b_nexus.h5"
    assert os.path.exists(scan["file"])


def test_status_page_in_a_headless_browser(service, redis_server):
    url, tmp_path = service
    from blissdata.redis_engine.store import DataStore

    wait(lambda: all(v["heartbeat"] for v in get_json(url + "status.json")["sessions"].values()))
    publish(DataStore(redis_server.url), relocate(load_recording("03_ascan"), tmp_path, session="svc_a"))
    wait(lambda: (s := get_json(url + "status.json")["sessions"]["svc_a"]["scans"]) and s[0]["status"] == "SUCCEEDED")
    profile = tmp_path / "chromium-profile"
    out = chromium(url, profile, "--dump-dom")
    dom = out.stdout
    assert "<h1>NeXus writers</h1>" in dom, out.stderr[-2000:]
    tables = _tables(dom)
    # the sessions table, as the browser built it: both writers alive (not "not alive")
    assert [row[:2] for row in tables["sessions"][1:]] == [["svc_a", "alive"], ["svc_b", "alive"]]
    # svc_a's scans: the ascan, SUCCEEDED in its state cell (not only in the page's CSS), its file
    scans = tables["scans"][0]
    assert scans[0] == ["scan", "name", "state", "scan ended", "points", "file", "entries", "problems", "plot"]
    row = scans[1]
    assert (row[1], row[2], row[3]) == ("ascan", "SUCCEEDED", "SUCCESS")
    assert row[5] == f"{tmp_path}/svc_a/data.h5"


def _tables(dom: str) -> dict:
    """The page's tables as lists of rows of cell texts: {"sessions": rows, "scans": [rows, ...]}."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.out, self.rows, self.cell, self.kind = {"sessions": None, "scans": []}, None, None, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table":
                self.rows, self.kind = [], "sessions" if attrs.get("id") == "sessions" else "scans"
            elif tag == "tr" and self.rows is not None:
                self.rows.append([])
            elif tag in ("td", "th") and self.rows is not None:
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None
            elif tag == "table" and self.rows is not None:
                if self.kind == "sessions":
                    self.out["sessions"] = self.rows
                else:
                    self.out["scans"].append(self.rows)
                self.rows = None

    parser = Tables()
    parser.feed(dom)
    return parser.out


def test_service_configuration_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("sessions:\n  - a\n  bogus: [\n")
    with pytest.raises(ConfigError, match=r"bad.yml:\d+: not valid YAML"):
        load_config(str(bad))
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("sesions: [a]\n")
    with pytest.raises(ConfigError, match=r"unknown.yml:1: sesions: unknown key"):
        load_config(str(unknown))
    with pytest.raises(ConfigError, match="'args' must be a list"):
        session_specs([], {"sessions": [{"name": "x", "args": "--base-path /d"}]})
    assert [s.name for s in session_specs(["a"], {"sessions": ["b", "a", {"name": "c"}]})] == ["a", "b", "c"]
    assert [_port(p) for p in ("8750", 0, "none", "NONE", None)] == [8750, 0, None, None, None]
    with pytest.raises(ConfigError, match="'x' is neither a port number nor 'none'"):
        _port("x")
    with pytest.raises(ConfigError, match="70000 is not a port number"):
        _port("70000")


def test_a_taken_port_falls_back_and_esrf_logging_options_do_what_they_say(redis_server, tmp_path):
    """A second service on the host (its port taken) still starts, on a free port, and says so;
    ESRF's logging options: --nologstdout, --logfile, --logfileout, --logfileerr, --filesize."""
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    logs = tmp_path / "svc"
    exe = os.path.join(os.path.dirname(sys.executable), "NexusWriterService")
    proc = subprocess.Popen([exe, "--session", "svc_port", "--redis-url", redis_server.url, "--port", str(port),
                             "--log-dir", str(tmp_path / "logs"), "--log=info", "--nologstdout",
                             "--logfile", str(logs / "all.log"), "--logfileout", str(logs / "out.log"),
                             "--logfileerr", str(logs / "err.log"), "--filesize", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = wait(lambda: (logs / "all.log").exists() and [
            line.split("status page on ")[1] for line in (logs / "all.log").read_text().splitlines()
            if "status page on " in line])[0]
        assert page != f"http://127.0.0.1:{port}/"
        assert set(get_json(page + "status.json")["sessions"]) == {"svc_port"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        taken.close()
    assert proc.returncode == 0
    assert out == ""  # --nologstdout
    warning = f"status page: port {port} is taken (Address already in use): using a free one"
    assert [line.split("WARNING ")[1].strip() for line in err.splitlines()] == [warning]
    everything = (logs / "all.log").read_text()
    assert warning in everything and "writing session(s) svc_port; session writer logs in " in everything
    assert warning not in (logs / "out.log").read_text()
    assert "writing session(s) svc_port" in (logs / "out.log").read_text()
    assert [line.split("WARNING ")[1].strip() for line in (logs / "err.log").read_text().splitlines()] == [warning]


def test_no_status_page_with_port_none(redis_server, tmp_path):
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "NexusWriterService")
    proc = subprocess.Popen([exe, "--session", "svc_none", "--redis-url", redis_server.url, "--port", "none",
                             "--log-dir", str(tmp_path / "logs")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        while not lines or "session writer started" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1], lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    text = "".join(lines) + out
    assert "no status page (--port none)" in text and "status page on" not in text


def test_redirected_stdout_goes_to_the_log_file(tmp_path):
    import argparse
    import sys

    from nexus_writer_service.apps import logconfig

    p = argparse.ArgumentParser()
    logconfig.add_options(p)
    args = p.parse_args(["--log=info", "--logfile", str(tmp_path / "all.log"), "--redirectstdout", "--nologstdout"])
    stdout, root = sys.stdout, logging.getLogger("nexus_writer_service")
    handlers, level = list(root.handlers), root.level
    try:
        logconfig.configure(args)
        print("printed by some library")
        sys.stdout.flush()
    finally:
        sys.stdout = stdout
        for h in root.handlers:
            h.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = (tmp_path / "all.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["INFO    printed by some library"]
