"""A small status page for people, and the same as JSON for programs.

Standard library only (``http.server``): the page is plain HTML that refreshes
itself every two seconds; it binds to localhost unless told otherwise. Per scan:
the writer's state and how the scan ended (BLISS's end reason: SUCCESS, USER_ABORT,
FAILURE ...), a progress bar (points written of those the scan announces while it
runs; of those it published once it ended, with the planned number beside: an ascan
aborted at 5 of 31 points is 5 / 5, "of 31 planned"), its warnings and a small plot of
its default signal (``service.plots``: inline SVG made here, no script; a running
scan's plot is redrawn at each refresh).
"""

from __future__ import annotations

import html
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from .plots import svg

_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}
.SUCCEEDED{color:#070}.FAILED{color:#b00}.INCOMPLETE{color:#b60}.WRITING{color:#05a}.dead{color:#b00}
.end-SUCCESS{color:#070}.end-USER_ABORT{color:#b60;font-weight:bold}.end-other{color:#b00;font-weight:bold}
.end-running{color:#05a}.planned{font-size:11px;color:#555}
.bar{width:130px;height:14px;border:1px solid #889;background:#fff;position:relative}
.bar>div{height:100%;background:#6a9fd8}.bar.done>div{background:#5cb85c}
.bar>span{position:absolute;left:0;right:0;top:0;font-size:11px;line-height:14px;text-align:center}
td.file{max-width:22em;word-break:break-all}ul.warnings{margin:0;padding-left:1.2em}"""


def _text(value) -> str:
    """Any value, as escaped text: everything shown comes from Redis or a process table."""
    return html.escape("-" if value is None else str(value), quote=True)


def _points(scan: dict):
    """The most points of any channel; a state that holds something else shows it (escaped)."""
    written = scan.get("written")
    if not isinstance(written, dict):
        return written if written is not None else 0
    counts = [v for v in written.values() if isinstance(v, int) and not isinstance(v, bool)]
    if len(counts) == len(written):
        return max(counts, default=0)
    return ", ".join(str(v) for v in written.values())


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _progress(scan: dict) -> str:
    """Points written as a bar: of those expected while the scan runs, of those published
    once it ended (with the planned number beside when it stopped short of it); without
    either number, the count alone."""
    points = _points(scan)
    written, expected, published = _count(points), _count(scan.get("expected")), _count(scan.get("published"))
    if written is None:  # a record of another shape: its text, escaped
        return _text(points)
    planned = ""
    if published is not None:  # the scan is over: what it published is the whole
        fraction = min(1.0, written / published) if published else 1.0
        label = f"{written} / {published}"
        if expected and expected != published:
            planned = f"<span class='planned'>of {expected} planned</span>"
    elif not expected:
        fraction, label = (1.0 if scan.get("status") == "SUCCEEDED" else 0.0), f"{written} points"
    else:
        fraction, label = min(1.0, written / expected), f"{written} / {expected}"
    done = " done" if scan.get("status") == "SUCCEEDED" else ""
    return (f"<div class='bar{done}' title='{_text(label)}'><div style='width:{100 * fraction:.1f}%'></div>"
            f"<span>{_text(label)}</span></div>{planned}")


#: writer states in which the scan is still going on (no end reason yet)
_RUNNING = ("PENDING", "WRITING")


def _ended(scan: dict) -> str:
    """The cell saying how the scan ended (BLISS's end reason), escaped."""
    reason = scan.get("end_reason")
    if isinstance(reason, str) and reason:
        cls = {"SUCCESS": "end-SUCCESS", "USER_ABORT": "end-USER_ABORT"}.get(reason, "end-other")
        return f"<td class='{cls}'>{_text(reason)}</td>"
    if scan.get("status") in _RUNNING:
        return "<td class='end-running'>running</td>"
    return "<td>-</td>"


def _problems(scan: dict) -> str:
    """The error, or the warnings as a list; escaped."""
    error, warnings = scan.get("error"), scan.get("warnings")
    if error:
        return _text(error)
    if isinstance(warnings, list):
        if not warnings:
            return ""
        return "<ul class='warnings'>" + "".join(f"<li>{_text(w)}</li>" for w in warnings) + "</ul>"
    return "" if warnings is None else _text(warnings)


def render(status: dict) -> str:
    """The page; every value goes through ``html.escape`` (HTML from Redis must not run)."""
    e = _text
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
             f"<title>NeXus writers</title><style>{_STYLE}</style></head><body>",
             f"<h1>NeXus writers</h1><p>Redis: {e(status.get('redis_url', ''))}</p>",
             "<table id='sessions'><tr><th>session</th><th>writer</th><th>pid</th><th>restarts</th>"
             "<th>last exit</th></tr>"]
    sessions = status.get("sessions") or {}
    for name, s in sessions.items():
        alive = "alive" if s.get("heartbeat") else "not alive"
        cls = "" if s.get("heartbeat") else " class='dead'"
        parts.append(f"<tr><td>{e(name)}</td><td{cls}>{alive}</td><td>{e(s.get('pid') or '-')}</td>"
                     f"<td>{e(s.get('restarts', 0))}</td><td>{e(s.get('last_exit'))}</td></tr>")
    parts.append("</table>")
    for name, s in sessions.items():
        parts.append(f"<h2>{e(name)}: recent scans</h2><table class='scans'><tr><th>scan</th><th>name</th>"
                     "<th>state</th><th>scan ended</th><th>points</th><th>file</th><th>entries</th>"
                     "<th>problems</th>"
                     "<th>plot</th></tr>")
        for scan in s.get("scans") or []:
            if not isinstance(scan, dict):
                continue
            entries = scan.get("entries")
            entries = ", ".join(str(x) for x in entries) if isinstance(entries, list) else entries
            state = e(scan.get("status", "?"))
            parts.append(f"<tr><td>{e(scan.get('number'))}</td><td>{e(scan.get('name', ''))}</td>"
                         f"<td class='{state}'>{state}</td>{_ended(scan)}<td>{_progress(scan)}</td>"
                         f"<td class='file'>{e(scan.get('file') or '-')}</td><td>{e(entries or '')}</td>"
                         f"<td>{_problems(scan)}</td><td>{svg(scan.get('plot'))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def _with_plots(status: dict, plots: Callable[[dict], dict | None]) -> dict:
    """Each scan's plot under ``scan["plot"]`` (the page draws it, /status.json gives its points)."""
    for s in (status.get("sessions") or {}).values():
        for scan in (s.get("scans") or []) if isinstance(s, dict) else []:
            if isinstance(scan, dict):
                scan["plot"] = plots(scan)
    return status


class PageServer(ThreadingHTTPServer):
    """Many clients at once (browsers, scripts polling ``/status.json``).

    socketserver's listen backlog is 5: beyond it connections waited for the client's
    TCP retries, seconds each. The backlog holds a burst, and at most ``WORKERS``
    threads answer (a thread per connection is unbounded); a client that sends
    nothing is dropped after ``Handler.timeout``.
    """

    request_queue_size = 512
    daemon_threads = True
    WORKERS = 16

    def __init__(self, *args, **kwargs):
        # before the socket is bound: a port already taken closes the server at once
        self._pool = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="status-page")
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        self._pool.submit(self.process_request_thread, request, client_address)

    def handle_error(self, request, client_address):
        """A client that went away (a browser reloading) is no error to print."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False)


def serve(get_status: Callable[[], dict], port: int, host: str = "127.0.0.1",
          plots: Callable[[dict], dict | None] | None = None) -> ThreadingHTTPServer:
    """Start the page in a thread; ``server.server_address`` tells the port (0: any free one).

    ``plots``: a scan state record -> its plot (``service.plots.PlotSource``); None: no plots.
    """

    class Handler(BaseHTTPRequestHandler):
        timeout = 10.0  # seconds a client may take to send its request

        def do_GET(self):
            status = get_status()
            if plots is not None:
                status = _with_plots(status, plots)
            if self.path.startswith("/status.json"):
                body, ctype = json.dumps(status, default=str).encode(), "application/json"
            elif self.path in ("/", "/index.html"):
                body, ctype = render(status).encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # no access log spam in the service's output
            pass

    server = PageServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="status-page", daemon=True).start()
    return server
