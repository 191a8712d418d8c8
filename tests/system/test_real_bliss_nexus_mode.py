"""REAL BLISS 2.2.1 with ``SCAN_SAVING.writer = 'nexus'``: BLISS's production mode, through
our Tango device.

Opt-in like tests/system/test_real_bliss.py (``NXW_REAL_BLISS=1``). Twice: with ESRF's exact
command lines (``RegisterNexusWriter SESSION --domain id99 --instance SESSION --server
nexuswriter --beacon-host H:P --log=info``, then ``NexusWriterService SESSION --log=info``
as ESRF's supervisor line), and with our own explicit options (server name, instance,
status page, log folder). Each time one Beacon serves the tests with its Tango database
(``--tango-port``: NosqlTangoDB from the BLISS venv); the device is put there by our
``RegisterNexusWriter`` and served by our ``NexusWriterService`` (with the session writer it
supervises), both from BLISS's own environment (the BLISS venv: pytango 9.5, blissdata
2.0.1), as at a beamline; one BLISS session (tests/realbliss/nexus_session.py) runs every
scan, driven line by line. BLISS then finds the device itself and checks it before and
during every scan, as at a beamline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

REPO = Path(__file__).resolve().parents[2]
REALBLISS = REPO / "tests" / "realbliss"
SESSION = "test_session"
BEAMLINE, INSTRUMENT = "id99", "ESRF-ID99"
DEVICE = f"{BEAMLINE}/bliss_nxwriter/{SESSION}"
#: how the device is registered and served: (server, instance) of each variant
VARIANTS = {"esrf": ("nexuswriter", SESSION), "explicit": ("NexusWriterService", "nxw_test")}
#: every scan kind BLISS must accept ('ct' is never saved; 'sct' is)
ACCEPTED = ["sct", "ascan", "amesh", "loopscan", "aborted"]

pytestmark = pytest.mark.skipif(
    os.environ.get("NXW_REAL_BLISS") != "1",
    reason="real-BLISS end-to-end tests are opt-in: set NXW_REAL_BLISS=1 "
    "(builds/reuses the BLISS 2.2.1 venv with scripts/bliss_env.sh)",
)
tango = pytest.importorskip("tango")

sys.path.insert(0, str(REALBLISS))
sys.path.insert(0, str(REPO / "tests"))


class BlissSession:
    """One BLISS process, set up once; ``scan(...)`` runs a scan and returns BLISS's RESULT."""

    def __init__(self, beacon, cwd: Path):
        self.log = open(cwd / "nexus_session.stderr", "w")
        self.proc = subprocess.Popen(
            [str(Path(beacon.bliss_venv) / "bin" / "python"), str(REALBLISS / "nexus_session.py")],
            env=beacon.env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, bufsize=1, start_new_session=True)
        #: the folder of the nexus_writer_service that BLISS imported
        self.package = self._read_until("READY", 120)

    def _read_until(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"BLISS said no {prefix} in {timeout} s: {self._tail()}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            assert line, f"BLISS exited ({self.proc.poll()}): {self._tail()}"
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def _tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def scan(self, scan: str, base_path: Path, label: str | None = None, timeout: float = 90) -> dict:
        self.proc.stdin.write(json.dumps({"scan": scan, "base_path": str(base_path), "label": label or scan}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read_until("RESULT ", timeout))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class NexusModeStack:
    def __init__(self, tmp: Path, beacon, variant: str):
        self.tmp, self.beacon, self.variant = tmp, beacon, variant
        self.server, self.instance = VARIANTS[variant]
        self.url = beacon.redis_data_url
        # BLISS's environment (TANGO_HOST, BEACON_HOST); ESRF's line names no log folder
        self.env = dict(beacon.env, XDG_STATE_HOME=str(tmp / "state"))
        self.env.pop("REDIS_DATA_URL", None)  # the service asks Beacon, as at a beamline
        self.service: subprocess.Popen | None = None
        self.bliss: BlissSession | None = None

    def run(self, *command: str) -> subprocess.CompletedProcess:
        from beacon import ours

        return subprocess.run([ours(self.beacon, command[0]), *command[1:]], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def proxy(self):
        # the database named in full: this process keeps its first default database (Tango
        # caches it), and each variant has its own Beacon
        return tango.DeviceProxy(f"tango://{self.beacon.tango_host}/{DEVICE}")

    def db(self):
        host, port = self.beacon.tango_host.rsplit(":", 1)
        return tango.Database(host, int(port))

    def register_command(self) -> list[str]:
        if self.variant == "esrf":  # ESRF's line, exactly
            return ["RegisterNexusWriter", SESSION, "--domain", BEAMLINE, "--instance", SESSION,
                    "--server", "nexuswriter", "--beacon-host", self.beacon.host_port, "--log=info"]
        return ["RegisterNexusWriter", SESSION, "--domain", BEAMLINE, "--family", "bliss_nxwriter",
                "--member", SESSION, "--instance", self.instance, "--server", self.server,
                "--class", "NexusWriter", "--beacon-host", self.beacon.host_port,
                "--property", "recommended_disk_space=1024"]

    def service_command(self) -> list[str]:
        if self.variant == "esrf":  # ESRF's supervisor program line, exactly
            return ["NexusWriterService", SESSION, "--log=info"]
        return ["NexusWriterService", self.instance, "--server", self.server, "--port", "0",
                "--log-dir", str(self.tmp / "logs"), "--log=info", "--log_tango=WARNING"]

    def start_service(self) -> None:
        from beacon import ours

        log = open(self.tmp / "service.out", "ab")
        command = self.service_command()
        self.service = subprocess.Popen([ours(self.beacon, command[0]), *command[1:]],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + 60
        while True:  # served and its session writer beating
            assert self.service.poll() is None, (self.tmp / "service.out").read_text()
            try:
                if self.proxy().state() == tango.DevState.ON:
                    return
            except tango.DevFailed:
                pass
            assert time.monotonic() < deadline, "our device never came ON: " + (self.tmp / "service.out").read_text()
            time.sleep(0.2)

    def stop_service(self) -> int | None:
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(60)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()
        return self.service.returncode if self.service is not None else None

    def set_properties(self, **properties) -> None:
        """Change device properties in the Tango database, then Init: what an operator does."""
        db = self.db()
        for name, value in properties.items():
            if value is None:
                db.delete_device_property(DEVICE, name)
            else:
                db.put_device_property(DEVICE, {name: str(value)})
        self.proxy().Init()


@pytest.fixture(scope="module", params=list(VARIANTS))
def stack(tmp_path_factory, request):
    t0 = time.monotonic()
    before = os.environ.get("TANGO_HOST")
    from beacon import prepare, running_beacon

    tmp = tmp_path_factory.mktemp(f"real_bliss_nexus_{request.param}")
    config = prepare(tmp, BEAMLINE, INSTRUMENT)  # BLISS built once; the repo's Beacon config
    with running_beacon(tmp / "beacon", config_dir=config, tango=True) as beacon:
        s = NexusModeStack(tmp, beacon, request.param)
        registered = s.run(*s.register_command())
        assert registered.returncode == 0, registered
        hint = f"NexusWriterService {s.instance}" + ("" if s.server == "nexuswriter" else f" --server {s.server}")
        assert registered.stdout == (f"{DEVICE} registered (class NexusWriter, server {s.server}/{s.instance}, "
                                     f"session {SESSION}); run it with: {hint}\n")
        s.start_service()
        s.bliss = BlissSession(beacon, tmp)
        print(f"\n[real_bliss_nexus] stack up in {time.monotonic() - t0:.1f} s ({tmp})")
        try:
            yield s
        finally:
            s.bliss.close()
            s.stop_service()
            if before is None:  # proxy() pointed this process at the module's database
                os.environ.pop("TANGO_HOST", None)
            else:
                os.environ["TANGO_HOST"] = before


@pytest.fixture(scope="module")
def accepted(stack):
    t0 = time.monotonic()
    out = {label: stack.bliss.scan(label, stack.tmp / "data") for label in ACCEPTED}
    print(f"[real_bliss_nexus] BLISS scans in {time.monotonic() - t0:.1f} s")
    from test_real_bliss import _final_state

    for line in out.values():
        if line["key"]:
            _final_state(stack, line["key"])  # all written before any test opens the file
    return out


def test_what_bliss_and_the_service_run_is_this_checkout(stack):
    assert stack.bliss.package == str(REPO / "nexus_writer_service")
    out = (stack.tmp / "service.out").read_text()
    assert (f"writing session(s) {SESSION} (Tango server {stack.server}/{stack.instance}); "
            "session writer logs in ") in out, out
    assert f"Tango device {DEVICE} (NexusWriter) for session {SESSION}" in out, out


def test_registration_reuses_the_sessions_device_as_esrf(stack):
    running = f"{stack.server}/{stack.instance}"
    hint = f"NexusWriterService {stack.instance}" + ("" if stack.server == "nexuswriter" else f" --server {stack.server}")
    again = stack.run(*stack.register_command())
    assert again.returncode == 0, again
    assert again.stdout == (f"{DEVICE} already registered (class NexusWriter, server {running}, "
                            f"session {SESSION}); run it with: {hint}\n")
    # another name for the same session: the existing device is reused, nothing added
    other = stack.run("RegisterNexusWriter", SESSION, "--domain", "id98", "--log=info")
    assert other.returncode == 0, other
    assert other.stdout == (f"{DEVICE} already registered (class NexusWriter, server {running}, "
                            f"session {SESSION}) (not registering id98/bliss_nxwriter/{SESSION}); "
                            f"run it with: {hint}\n")
    db = stack.db()
    assert list(db.get_device_name("*", "NexusWriter")) == [DEVICE]
    # --ignore_existing registers it anyway (ESRF's); BLISS would then find two: removed again
    forced = stack.run("RegisterNexusWriter", SESSION, "--domain", "id98", "--ignore_existing")
    try:
        assert forced.returncode == 0, forced
        assert forced.stdout == (f"id98/bliss_nxwriter/{SESSION} registered (class NexusWriter, server "
                                 f"nexuswriter/{SESSION}, session {SESSION}); run it with: "
                                 f"NexusWriterService {SESSION}\n")
        two = stack.run("RegisterNexusWriter", SESSION)
        assert two.returncode == 1
        assert two.stderr == (f"RegisterNexusWriter: session '{SESSION}' already has 2 NexusWriter devices "
                              f"({DEVICE}, id98/bliss_nxwriter/{SESSION}): BLISS refuses to choose; remove all "
                              "but one (e.g. with jive, or tango.Database().delete_device)\n")
    finally:
        db.delete_device(f"id98/bliss_nxwriter/{SESSION}")
    # BLISS 2.4's device, in another instance (this module's service does not serve it)
    mapping = stack.run("RegisterNexusWriter", SESSION, "--domain", BEAMLINE, "--instance", "nxw_other",
                        "--class", "BlissWriter", "--property", "required_disk_space=500")
    assert mapping.returncode == 0, mapping
    assert mapping.stdout == (f"{BEAMLINE}/blisswriter/{SESSION} registered (class BlissWriter, "
                              f"server nexuswriter/nxw_other, session {SESSION}); run it with: "
                              "NexusWriterService nxw_other\n")
    assert list(db.get_device_name("nexuswriter/nxw_other", "BlissWriter")) == [f"{BEAMLINE}/blisswriter/{SESSION}"]
    props = db.get_device_property(f"{BEAMLINE}/blisswriter/{SESSION}", ["session", "required_disk_space"])
    assert (list(props["session"]), list(props["required_disk_space"])) == ([SESSION], ["500"])


@pytest.mark.parametrize("label", ACCEPTED)
def test_bliss_accepts_and_we_write(stack, accepted, label):
    from test_real_bliss import _check_entry, _check_generated_metadata, _final_state, _load, _published

    line = accepted[label]
    assert line["error"] is None, line["error"]
    writer_texts = [w for w in line["warnings"] if "writer" in w.lower() or "disk" in w.lower()]
    assert writer_texts == [], writer_texts
    assert line["data_writer"] == "nexus"
    expected = str(stack.tmp / "data" / SESSION / "data.h5")
    assert line["filename"] == expected == line["scan_saving_file"]
    scan = _load(stack, line["key"])
    assert scan.path == expected
    _check_generated_metadata(scan)
    state = _final_state(stack, line["key"])
    assert state["status"] == "SUCCEEDED", state
    assert os.path.abspath(state["file"]) == expected
    entry = f"{line['number']}.1"
    with h5py.File(expected, "r") as f:
        _check_entry(f, entry, scan, state)
        if label == "aborted":
            assert f[entry]["end_reason"][()].decode() == "USER_ABORT"
            assert max(len(d) for d in _published(scan).values()) < line["npoints"]
        if label == "amesh":  # channels stay flat: 4 x 3 points
            assert f[entry]["measurement/diode1"].shape == (12,) == (line["npoints"],)
        if label == "loopscan":  # one group per detector of the simulated MCA, as BLISS names them
            assert sorted(name for name in f[entry]["instrument"] if name.startswith("simu1")) == [
                "simu1_det0", "simu1_det1", "simu1_det2", "simu1_det3"]
    # what the device tells a control room about it
    dev = stack.proxy()
    assert dev.scan_state(line["identifier"]) == tango.DevState.OFF
    assert f"{expected}::/{entry}" in list(dev.scan_url(line["identifier"]))
    assert line["identifier"] in list(dev.scan_names)


def test_nexus_mode_file_is_valid_nexus(stack, accepted):
    from nxvalidation import nexus_errors

    path = accepted["ascan"]["filename"]
    with h5py.File(path, "r") as f:
        assert {f"{accepted[l]['number']}.1" for l in ACCEPTED} <= set(f)
    assert nexus_errors(path) == []
    dev = stack.proxy()
    assert (dev.failed_scans, dev.incomplete_scans) == (0, 0)


def test_low_disk_space_warning_in_bliss(stack, accepted):
    stack.set_properties(recommended_disk_space=1e12)
    try:
        line = stack.bliss.scan("ascan", stack.tmp / "data", "low_disk")
    finally:
        stack.set_properties(recommended_disk_space=None)
    assert line["error"] is None, line["error"]
    ours = [w for w in line["warnings"] if w.startswith("Free disk space below 1000000000000 MB for ")]
    assert ours and "(device property recommended_disk_space)" in ours[0], line["warnings"]


def test_disk_below_the_threshold_refuses_the_scan(stack, accepted):
    stack.set_properties(required_disk_space=1e12)
    try:
        line = stack.bliss.scan("ascan", stack.tmp / "data", "no_disk")
    finally:
        stack.set_properties(required_disk_space=None)
    assert line["error"].startswith("RuntimeError: Free disk space below 1000000000000 MB for "
                                    f"{stack.tmp / 'data' / SESSION / 'data.h5'}: ")
    assert "(device property required_disk_space)" in line["error"]


def test_unwritable_folder_refuses_the_scan(stack, accepted):
    folder = stack.tmp / "readonly" / SESSION
    folder.mkdir(parents=True)
    root = os.geteuid() == 0
    if root:  # root ignores mode bits: an immutable folder is what it cannot write
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("chattr +i is not possible here")
    else:
        folder.chmod(0o555)
    try:
        line = stack.bliss.scan("ascan", stack.tmp / "readonly", "readonly")
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)
    assert line["error"].startswith(
        f"RuntimeError: Cannot check Nexus writer permissions (Nexus writer PermissionError: the NeXus "
        f"writer cannot write scan {line['identifier']}: folder {folder} is not writable by user ")
    assert not (folder / "data.h5").exists()


def test_stop_command_refuses_scans_until_start(stack, accepted):
    dev = stack.proxy()
    dev.Stop()
    try:
        line = stack.bliss.scan("ascan", stack.tmp / "data", "stopped")
    finally:
        dev.Start()
    assert line["error"].startswith(
        f"RuntimeError: Nexus writer service is in OFF state ({SESSION}: stopped by the Stop command: "
        "scans are refused until Start). Call the Nexus writer 'start' method.")
    deadline = time.monotonic() + 30
    while dev.state() != tango.DevState.ON:  # the session writer runs again
        assert time.monotonic() < deadline, dev.status()
        time.sleep(0.2)
    line = stack.bliss.scan("ascan", stack.tmp / "data", "restarted")
    assert line["error"] is None, line["error"]
    from test_real_bliss import _final_state

    assert _final_state(stack, line["key"])["status"] == "SUCCEEDED"


def test_device_server_stopped_fails_the_next_scan(stack, accepted):
    """Last test of the module: it stops the service."""
    assert stack.stop_service() == 0
    line = stack.bliss.scan("ascan", stack.tmp / "data", "no_device")
    # BLISS's proxy is new (the device is not exported any more) or still holds the old
    # connection (it cannot reconnect): BLISS refuses the scan at once either way
    head = "RuntimeError: Cannot check Nexus writer state (Nexus writer "
    assert line["error"].startswith((head + "API_DeviceNotExported: ", head + "API_CantConnectToDevice: ")), \
        line["error"]
    from nexus_writer_service.transport.status import StatusReader

    assert StatusReader(stack.url).scan(line["key"]) is None  # no writer saw it


def test_a_blisswriter_device_registered_as_blisswriter3_does_is_served(stack, accepted):
    """BLISS 2.4's 'mapping' mode: the device ``blisswriter tango register REDIS_URL --session S
    --instance I`` makes (class BlissWriter, server BlissWriter/I, properties redis_url and
    session), served by ``NexusWriterService I --server BlissWriter``: its session written from
    the device's Redis (the service is given no other: the device is ON only once that
    writer beats there). After the module's own service is stopped (one writer per session)."""
    assert stack.stop_service() == 0
    name = f"id00/blisswriter/{SESSION}"
    info = tango.DbDevInfo()  # what blisswriter 3.0.0's register_blisswriter puts there
    info.name, info._class, info.server = name, "BlissWriter", "BlissWriter/nxw_map"
    db = stack.db()
    db.add_device(info)
    db.put_device_property(name, {"redis_url": stack.url, "session": SESSION})
    # a scan BLISS ran while no writer was served (refused): the writer started now recovers
    # it from the device's Redis and writes it
    key = stack.bliss.scan("ascan", stack.tmp / "data", "mapping_mode")["key"]
    env = {k: v for k, v in stack.env.items() if k != "BEACON_HOST"}  # the Redis: the device's
    log = open(stack.tmp / "mapping.out", "wb")
    from beacon import ours

    service = subprocess.Popen([ours(stack.beacon, "NexusWriterService"), "nxw_map", "--server",
                                "BlissWriter", "--port", "none", "--log-dir", str(stack.tmp / "logs_map")],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=stack.tmp)
    try:
        dev = tango.DeviceProxy(f"tango://{stack.beacon.tango_host}/{name}")
        deadline = time.monotonic() + 60
        while True:
            try:
                if dev.state() in (tango.DevState.ON, tango.DevState.RUNNING) and dev.SaveScan(key):
                    break
            except tango.DevFailed:
                pass
            assert service.poll() is None and time.monotonic() < deadline, (stack.tmp / "mapping.out").read_text()
            time.sleep(0.2)
        while dev.scan_state(key) != tango.DevState.OFF:
            assert time.monotonic() < deadline, dev.scan_state_reason(key)
            time.sleep(0.2)
        assert dev.scan_state_reason(key).startswith("SUCCEEDED: ")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        log.close()
    assert service.returncode == 0
    out = (stack.tmp / "mapping.out").read_text()
    assert f"writing session(s) {SESSION} (Tango server BlissWriter/nxw_map)" in out, out
