"""A small status page for people, and the same as JSON for programs.

Standard library only (``http.server``): the page is plain HTML that refreshes
itself every two seconds; it binds to localhost unless told otherwise.
"""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}
.SUCCEEDED{color:#070}.FAILED{color:#b00}.INCOMPLETE{color:#b60}.WRITING{color:#05a}.dead{color:#b00}"""


def render(status: dict) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
             f"<title>NeXus writers</title><style>{_STYLE}</style></head><body>",
             f"<h1>NeXus writers</h1><p>Redis: {e(status.get('redis_url', ''))}</p>",
             "<table id='sessions'><tr><th>session</th><th>writer</th><th>pid</th><th>restarts</th>"
             "<th>last exit</th></tr>"]
    for name, s in status["sessions"].items():
        alive = "alive" if s.get("heartbeat") else "not alive"
        cls = "" if s.get("heartbeat") else " class='dead'"
        parts.append(f"<tr><td>{e(name)}</td><td{cls}>{alive}</td><td>{s.get('pid') or '-'}</td>"
                     f"<td>{s.get('restarts', 0)}</td><td>{s.get('last_exit') if s.get('last_exit') is not None else '-'}</td></tr>")
    parts.append("</table>")
    for name, s in status["sessions"].items():
        parts.append(f"<h2>{e(name)}: recent scans</h2><table class='scans'><tr><th>scan</th><th>name</th>"
                     "<th>state</th><th>points</th><th>file</th><th>entries</th><th>problems</th></tr>")
        for scan in s.get("scans", []):
            points = max((scan.get("written") or {}).values(), default=0)
            problems = scan.get("error") or "; ".join(scan.get("warnings") or [])
            state = str(scan.get("status", "?"))
            parts.append(f"<tr><td>{e(str(scan.get('number')))}</td><td>{e(str(scan.get('name', '')))}</td>"
                         f"<td class='{e(state)}'>{e(state)}</td><td>{points}</td>"
                         f"<td>{e(str(scan.get('file') or '-'))}</td><td>{e(', '.join(scan.get('entries') or []))}</td>"
                         f"<td>{e(problems)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def serve(get_status: Callable[[], dict], port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the page in a thread; ``server.server_address`` tells the port (0: any free one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status = get_status()
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

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="status-page", daemon=True).start()
    return server
