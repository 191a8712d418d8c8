"""The status page's server without Redis: many clients at once, only where it listens."""

from __future__ import annotations

import errno
import json
import threading
import urllib.request

import pytest

from nexus_writer_service.service.web import PageServer, serve


def test_two_hundred_clients_at_once_are_all_answered():
    status = {"sessions": {}, "scans": []}
    server = serve(lambda: status, 0)
    host, port = server.server_address
    results: list = []
    start = threading.Barrier(200)

    def client():
        start.wait()
        for _ in range(2):
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/status.json", timeout=10) as r:
                    results.append((r.status, json.loads(r.read())))
            except OSError as exc:  # refused, reset or timed out: what the old backlog of 5 gave
                results.append((type(exc).__name__, str(exc)))

    threads = [threading.Thread(target=client) for _ in range(200)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.shutdown()
        server.server_close()
    assert len(results) == 400
    assert [r for r in results if r != (200, status)] == []
    assert isinstance(server, PageServer) and server.WORKERS == 16


def test_the_page_listens_only_where_it_is_told():
    server = serve(lambda: {}, 0, host="127.0.0.1")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_an_os_error_saying_so():
    first = serve(lambda: {}, 0)
    try:
        with pytest.raises(OSError) as taken:
            serve(lambda: {}, first.server_address[1])
        assert taken.value.errno == errno.EADDRINUSE
    finally:
        first.shutdown()
        first.server_close()
