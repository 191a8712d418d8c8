"""The Tango devices (nexus_writer_service/tango) against a real Redis and a real session writer.

``tango.test_context.DeviceTestContext`` runs a device without a Tango database, in
this process; the client calls are the ones BLISS makes (BLISS 2.2.1's
``ExternalTangoNexusWriter`` for ``NexusWriter``, BLISS 2.4.0's
``ExternalTangoMappingWriter`` for ``BlissWriter``), with the scan published step by
step as BLISS does and written by our writer (the ``harness`` fixture).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import h5py
import pytest

tango = pytest.importorskip("tango")
from tango import DevFailed, DevState  # noqa: E402
from tango.test_context import DeviceTestContext  # noqa: E402

from nexus_writer_service.io.path_policy import PathPolicy  # noqa: E402
from nexus_writer_service.simulation.recording import load_recording, relocate  # noqa: E402
from nexus_writer_service.simulation.replay import ScanPublisher  # noqa: E402
from nexus_writer_service.tango import checks, hosting, options  # noqa: E402
from nexus_writer_service.tango.bliss_writer import BlissWriter  # noqa: E402
from nexus_writer_service.tango.nexus_writer import NexusWriter  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def wait_for(fn, timeout: float = 10.0, period: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)


#: pytango 9 (BLISS 2.2's) starts one device server per process: a second in-process one
#: never gets its port. There each device runs in a forked process (what this process set up
#: before, a hosted writer included, is inherited); pytango 10 runs them in this process.
_FORK = tango.__version_info__[0] < 10


@contextlib.contextmanager
def device(cls, **properties):
    with DeviceTestContext(cls, properties=properties, process=_FORK) as proxy:
        yield proxy


@contextlib.contextmanager
def unwritable(folder: Path):
    """A folder this process cannot write in. Root ignores mode bits: it gets an
    immutable folder instead (what a read-only mount would also give)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a folder unwritable for root here (chattr +i failed)")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def publisher(harness, name: str = "03_ascan", number: int = 7, base: Path | None = None) -> ScanPublisher:
    """A recorded BLISS scan of the harness's session, to publish step by step."""
    rec = relocate(load_recording(name), base or harness.base, session=harness.session, number=number)
    return ScanPublisher(harness.ds, rec)


# -- the rules, without a server ---------------------------------------------------------
@pytest.mark.parametrize("record, state", [
    (None, "UNKNOWN"),
    ({"status": "PENDING"}, "INIT"),
    ({"status": "WRITING", "file": "/a.h5"}, "ON"),
    ({"status": "SUCCEEDED", "file": "/a.h5", "written": {"x": 5}}, "OFF"),
    ({"status": "INCOMPLETE", "warnings": ["3 points lost"]}, "OFF"),
    ({"status": "SKIPPED"}, "OFF"),
    ({"status": "FAILED", "error": "entry 7.1 exists"}, "FAULT"),
])
def test_nexus_scan_states(record, state):
    got, reason = checks.nexus_scan_state(record)
    assert got == state
    if state == "FAULT":
        assert reason == "entry 7.1 exists"
    if record and record.get("warnings"):
        assert "3 points lost" in reason


@pytest.mark.parametrize("record, requested, state", [
    (None, False, "UNKNOWN"), (None, True, "INIT"), ({"status": "PENDING"}, True, "ON"),
    ({"status": "WRITING"}, True, "ON"), ({"status": "SUCCEEDED"}, True, "OFF"),
    ({"status": "FAILED", "error": "boom"}, True, "FAULT"),
])
def test_mapping_scan_states(record, requested, state):
    assert checks.mapping_scan_state(record, requested)[0] == state
    assert checks.mapping_scan_state(record, requested, "disk full") == ("FAULT", "disk full")


def test_session_states_while_a_hosted_writer_stops_or_starts():
    beat = {"pid": 10, "host": "h", "version": "1", "started": time.time()}
    assert checks.session_state(beat, True, {"running": True, "pid": 10})[0] == "ON"
    assert checks.session_state(beat, True, None)[0] == "ON"  # not hosted: Redis says it all
    state, text = checks.session_state(beat, True, {"running": True, "pid": 10, "stopping": True})
    assert state == "INIT" and "stopping (pid 10" in text
    state, text = checks.session_state(beat, True, {"running": True, "pid": 11})
    assert state == "INIT" and "previous one (pid 10) still beats" in text
    assert checks.session_state(beat, False, {"running": True, "pid": 10})[0] == "OFF"
    state, text = checks.session_state(None, True, {"running": False, "pid": None, "last_exit": 3,
                                                    "restarts": 2, "log": "/l/s.log"})
    assert state == "FAULT" and "exited with code 3 (2 restart(s)); log: /l/s.log" in text


def test_identifiers():
    assert checks.parse_identifier("2_ascan") == (2, "ascan")
    assert checks.parse_identifier("12_my_scan") == (12, "my_scan")
    assert checks.parse_identifier("ascan") is None and checks.parse_identifier("x_ascan") is None


def test_write_refusal(tmp_path):
    assert checks.write_refusal(str(tmp_path / "new" / "deeper" / "data.h5")) == ""
    # the writer's own rule first, in its words (io.path_policy)
    roots = PathPolicy((str(tmp_path / "a"),), strict=True)
    assert checks.write_refusal(str(tmp_path / "b" / "data.h5"), roots) == (
        f"'{tmp_path}/b/data.h5' is outside the writer's allowed roots "
        f"({os.path.realpath(tmp_path / 'a')}; see --allowed-root): not written")
    assert checks.write_refusal(str(tmp_path / "a" / "data.h5"), roots) == ""
    assert checks.write_refusal("/etc/data/data.h5") == (
        "'/etc/data/data.h5' is in a system folder (/etc; give --allowed-root to write there): not written")
    assert checks.write_refusal(str(tmp_path / ".cache" / "data.h5")) == (
        f"'{tmp_path}/.cache/data.h5' is in a hidden folder (give --allowed-root to write there): not written")
    assert checks.write_refusal("/etc/data/data.h5", PathPolicy(("/etc/data",))) == ""
    (tmp_path / "plain").write_text("")
    assert "is not a folder" in checks.write_refusal(str(tmp_path / "plain" / "data.h5"))
    assert "is a folder" in checks.write_refusal(str(tmp_path))
    assert checks.write_refusal(None) == "no file is known for this scan"
    with unwritable(tmp_path / "ro") as ro:
        assert f"folder {ro} is not writable" in checks.write_refusal(str(ro / "data.h5"))


# -- NexusWriter: BLISS 2.2.1's 'nexus' mode ---------------------------------------------
def test_nexus_writer_follows_a_scan_as_bliss_asks(harness):
    number, ident = 7, "7_ascan"
    with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
        assert dev.state() == DevState.ON
        assert f"pid {os.getpid()}" in dev.status() and harness.session in dev.status()
        assert dev.scan_exists(ident) is False and dev.scan_state(ident) == DevState.UNKNOWN

        pub = publisher(harness, number=number)
        pub.create()  # BLISS creates the scan, then asks (writer.prepare)
        assert wait_for(lambda: dev.scan_exists(ident), 10), "the device never saw the scan"
        assert dev.scan_state(ident) in (DevState.INIT, DevState.ON)
        assert dev.scan_has_write_permissions(ident) is True
        assert dev.scan_disk_space_error(ident) == "" and dev.scan_disk_space_warning(ident) == ""
        root = harness.base / harness.session / "sub"
        dev.makedirs(str(root))
        assert root.is_dir()
        with pytest.raises(DevFailed, match="not an absolute path"):
            dev.makedirs("relative/folder")

        pub.prepare().start()
        assert wait_for(lambda: dev.scan_state(ident) == DevState.ON, 10)
        pub.send_data()
        pub.end()
        assert wait_for(lambda: dev.scan_state(ident) == DevState.OFF, 20), dev.scan_state_reason(ident)
        state = harness.state(pub.key)
        assert state.status == "SUCCEEDED"
        reason = dev.scan_state_reason(ident)
        assert reason.startswith("SUCCEEDED: ") and state.file in reason
        assert list(dev.scan_url(ident)) == [f"{state.file}::/{number}.1"]
        # what a control room reads
        assert dev.recent_scans[0].startswith(f"{ident} SUCCEEDED {max(state.written.values())} ")
        assert list(dev.scan_keys)[0] == pub.key
        assert (dev.failed_scans, dev.incomplete_scans, dev.active_scans) == (0, 0, 0)
        assert dev.writer_pid == os.getpid() and dev.data_url == harness.url
        assert harness.session in dev.sessions


def test_a_repeated_identifier_means_the_newest_scan(make_harness, tmp_path):
    """Scan numbers restart in every data file: '7_ascan' of an earlier file must not
    make BLISS believe the writer has its new scan."""
    first = make_harness()
    key = publisher(first, number=7).run()
    assert first.state(key).status == "SUCCEEDED"
    with device(NexusWriter, session=first.session, redis_url=first.url) as dev:
        assert dev.scan_state("7_ascan") == DevState.OFF
        first.stop()  # no writer sees the next one
        assert dev.state() == DevState.FAULT and "no session writer alive" in dev.status()
        again = publisher(first, number=7, base=tmp_path / "dataset2")
        again.create()
        assert dev.scan_exists("7_ascan") is False
        assert dev.scan_state("7_ascan") == DevState.UNKNOWN
        make_harness(session=first.session)  # a new writer recovers it at start
        assert wait_for(lambda: dev.scan_exists("7_ascan"), 10)
        # a scan seen and not finished: RUNNING, as ESRF's device while it writes (BLISS accepts it)
        assert dev.state() == DevState.RUNNING and dev.status().endswith(", writing 1 scan(s)")
        again.prepare().start()
        again.send_data()
        again.end()
        assert wait_for(lambda: dev.scan_state("7_ascan") == DevState.OFF, 20)
        assert str(tmp_path / "dataset2") in dev.scan_state_reason("7_ascan")


def test_a_failed_scan_is_fault_with_the_writers_error(harness):
    """An entry that exists already: our writer fails the scan, BLISS gets FAULT and why."""
    publisher(harness, number=8).run()
    key = publisher(harness, number=8).run()  # same file, same entry 8.1
    state = harness.state(key)
    assert state.status == "FAILED" and state.error
    with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
        assert dev.scan_state("8_ascan") == DevState.FAULT
        assert dev.scan_state_reason("8_ascan") == state.error
        assert dev.failed_scans == 1


def test_write_permission_refused_with_the_reason(harness, tmp_path):
    with unwritable(tmp_path / "ro") as ro:
        pub = publisher(harness, number=9, base=ro)
        pub.create()
        with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
            assert wait_for(lambda: dev.scan_exists("9_ascan"), 10)
            with pytest.raises(DevFailed) as err:
                dev.scan_has_write_permissions("9_ascan")
            desc = err.value.args[0].desc
            # what BLISS shows: "Cannot check Nexus writer permissions (Nexus writer <desc>)"
            assert desc.startswith("PermissionError: the NeXus writer cannot write scan 9_ascan: ")
            assert f"{ro} is not writable by user" in desc
        pub.prepare().start()
        pub.end()
        harness.state(pub.key)


def test_the_device_refuses_what_the_writer_refuses_in_its_words(make_harness, tmp_path):
    """A writer started with allowed roots publishes them (its heartbeat); the device refuses
    a scan outside them, and one in a system folder, with the words the writer FAILS it with."""
    allowed, base = tmp_path / "allowed", tmp_path / "base"
    strict = make_harness(base_path=str(base), allowed_roots=[str(allowed)])
    outside = publisher(strict, number=15, base=tmp_path / "elsewhere")
    path = outside.rec.identity["path"]
    roots = f"{os.path.realpath(allowed)}, {os.path.realpath(base)}"
    words = f"{path!r} is outside the writer's allowed roots ({roots}; see --allowed-root): not written"
    outside.create()
    with device(NexusWriter, session=strict.session, redis_url=strict.url) as dev:
        assert wait_for(lambda: dev.scan_exists("15_ascan"), 10)
        with pytest.raises(DevFailed) as err:
            dev.scan_has_write_permissions("15_ascan")
        assert err.value.args[0].desc.rstrip("\n") == f"PermissionError: the NeXus writer cannot write scan 15_ascan: {words}"
    with device(BlissWriter, session=strict.session, redis_url=strict.url) as dev:
        with pytest.raises(RuntimeError) as err:
            Bliss24Client(dev).prepare(outside.key)
        assert str(err.value) == f"Scan writer state is FAULT: {words}"
    outside.prepare().start()
    outside.end()
    state = strict.state(outside.key)
    assert (state.status, state.error) == ("FAILED", f"FileAccessError: [Errno 13] {words}")

    lenient = make_harness()  # no allowed roots: anywhere but system and hidden folders
    system = publisher(lenient, number=16, base=Path("/etc/nexus_writer_test"))
    path = system.rec.identity["path"]
    words = f"{path!r} is in a system folder (/etc; give --allowed-root to write there): not written"
    system.create()
    with device(NexusWriter, session=lenient.session, redis_url=lenient.url) as dev:
        assert wait_for(lambda: dev.scan_exists("16_ascan"), 10)
        with pytest.raises(DevFailed) as err:
            dev.scan_has_write_permissions("16_ascan")
        assert err.value.args[0].desc.rstrip("\n") == f"PermissionError: the NeXus writer cannot write scan 16_ascan: {words}"
    system.prepare().start()
    system.end()
    state = lenient.state(system.key)
    assert (state.status, state.error) == ("FAILED", f"FileAccessError: [Errno 13] {words}")
    assert not os.path.exists("/etc/nexus_writer_test")


def test_disk_space_thresholds_are_device_properties(harness):
    pub = publisher(harness, number=10)
    pub.create()
    huge = 1e12  # MB: more than any disk
    with device(NexusWriter, session=harness.session, redis_url=harness.url,
                required_disk_space=huge, recommended_disk_space=huge) as dev:
        assert wait_for(lambda: dev.scan_exists("10_ascan"), 10)
        error = dev.scan_disk_space_error("10_ascan")
        assert error.startswith("Free disk space below 1000000000000 MB for ")
        assert "(device property required_disk_space)" in error
        assert "(device property recommended_disk_space)" in dev.scan_disk_space_warning("10_ascan")
        assert dev.scan_has_required_disk_space("10_ascan") is False
    with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
        assert dev.scan_disk_space_error("10_ascan") == "" and dev.scan_has_required_disk_space("10_ascan")
    pub.prepare().start()
    pub.end()
    harness.state(pub.key)


def test_states_without_writer_redis_or_session(redis_server):
    with device(NexusWriter, session="nobody_writes_this", redis_url=redis_server.url) as dev:
        assert dev.state() == DevState.FAULT
        assert dev.status() == ("nobody_writes_this: no session writer alive for this session "
                                "(no heartbeat in Redis)")
        dev.Stop()
        assert dev.state() == DevState.OFF and "stopped by the Stop command" in dev.status()
        dev.Start()
        assert dev.state() == DevState.FAULT
    with device(NexusWriter, session="s", redis_url="redis://127.0.0.1:1") as dev:
        assert dev.state() == DevState.FAULT
        assert "cannot read the writer's state: Redis redis://127.0.0.1:1: " in dev.status()
    with device(NexusWriter) as dev:
        assert dev.state() == DevState.FAULT and "property 'session' is not set" in dev.status()
        with pytest.raises(DevFailed, match="property 'session' is not set"):
            dev.scan_exists("1_ascan")


@pytest.mark.skipif(_FORK, reason="pytango 9: the device would run in a forked copy of the supervisor "
                    "(tests/system/test_real_bliss_nexus_mode.py covers Start/Stop with pytango 9.5)")
def test_start_stop_act_on_the_supervised_writer(redis_server, tmp_path):
    """As in ``NexusWriterService INSTANCE``: Stop ends the writer process and keeps it
    stopped, BLISS's next scan sees OFF; Start runs it again."""
    import threading

    from nexus_writer_service.service.supervisor import SessionSpec, Supervisor

    session = f"tango_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    supervisor = Supervisor([SessionSpec(session, ["--base-path", str(tmp_path)])], redis_server.url,
                            "info", str(tmp_path / "logs"))
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [supervisor.poll() for _ in iter(lambda: stop.wait(0.2), True)],
                              daemon=True)
    hosting.host(hosting.SupervisorControl(supervisor))
    try:
        supervisor.start_all()
        poller.start()
        with device(NexusWriter, session=session) as dev:  # the Redis URL: the service's
            assert dev.data_url == redis_server.url
            assert dev.state() in (DevState.INIT, DevState.ON)
            assert wait_for(lambda: dev.state() == DevState.ON, 30), dev.status()
            pid = dev.writer_pid
            assert pid == supervisor.processes()[session]["pid"]
            dev.Stop()
            assert dev.state() == DevState.OFF
            assert wait_for(lambda: not supervisor.processes()[session]["running"], 20)
            time.sleep(1.5)  # more than the restart back-off: still stopped
            assert not supervisor.processes()[session]["running"] and dev.writer_pid == 0
            assert dev.state() == DevState.OFF
            dev.Start()
            assert wait_for(lambda: dev.state() == DevState.ON, 30), dev.status()
            second = dev.writer_pid
            assert second not in (0, pid)
            # Stop then Start at once: the old writer still beats while it stops, yet the
            # device is not ON until the new one does (BLISS must not scan in between)
            dev.Stop()
            dev.Start()
            seen = set()
            assert wait_for(lambda: seen.add(str(dev.state())) or (
                dev.state() == DevState.ON and dev.writer_pid not in (0, second)), 30), dev.status()
            assert "INIT" in seen
    finally:
        hosting.host(None)
        stop.set()
        poller.join(5)
        supervisor.stop_all()


# -- BlissWriter: BLISS 2.4's 'mapping' mode -----------------------------------------------
class Bliss24Client:
    """The calls of bliss 2.4.0's ExternalTangoMappingWriter (bliss/scanning/writer/
    external_tango_mapping.py), in its order, with its 10 s retries and 0.1 s period."""

    def __init__(self, proxy):
        self.proxy, self.warning_index, self.warnings = proxy, 0, []

    def _retry(self, check, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def prepare(self, key: str) -> None:
        p = self.proxy
        assert p.state() in (DevState.ON, DevState.RUNNING), p.status()
        assert self._retry(lambda: bool(p.SaveScan(key))), "Nexus writer did not accept scan"
        assert self._retry(lambda: p.scan_state(key) != DevState.UNKNOWN), "did not receive scan"

        def running() -> bool:
            state = p.scan_state(key)
            if state == DevState.FAULT:
                raise RuntimeError(f"Scan writer state is FAULT: {p.scan_state_reason(key)}")
            return state == DevState.ON

        assert self._retry(running), "Nexus writer not ready to save scan"

    def check(self, key: str) -> None:
        p = self.proxy
        count = p.GetWarningCount(key)
        while self.warning_index < count:
            self.warnings.append(p.GetWarning(json.dumps({"scan_key": key, "index": self.warning_index})))
            self.warning_index += 1
        if p.scan_state(key) == DevState.FAULT:
            raise RuntimeError(f"Scan writer state is FAULT: {p.scan_state_reason(key)}")


def test_bliss_writer_answers_bliss_24(harness):
    with device(BlissWriter, session=harness.session, redis_url=harness.url) as dev:
        client = Bliss24Client(dev)
        pub = publisher(harness, number=11)
        pub.create()
        client.prepare(pub.key)  # BLISS 2.4 asks while its scan is still being prepared
        pub.prepare().start()
        client.check(pub.key)
        pub.send_data()
        pub.end()
        client.check(pub.key)
        assert wait_for(lambda: dev.scan_state(pub.key) == DevState.OFF, 20), dev.scan_state_reason(pub.key)
        assert client.warnings == []
        assert harness.state(pub.key).status == "SUCCEEDED"
        assert dev.scan_state_reason(pub.key).startswith("SUCCEEDED: ")
        assert dev.scan_state("esrf:scan:nothing") == DevState.UNKNOWN
        assert dev.SaveScan("esrf:scan:nothing") is False
        dev.Stop()
        assert dev.state() == DevState.OFF and dev.SaveScan(pub.key) is False
        dev.Start()
        assert dev.state() == DevState.ON and dev.SaveScan(pub.key) is True


def test_bliss_writer_refuses_scans_it_cannot_write(harness, make_harness, tmp_path):
    other = make_harness()  # a scan of another session is not ours to write
    foreign = publisher(other, number=12)
    foreign.create()
    with unwritable(tmp_path / "ro") as ro, device(BlissWriter, session=harness.session, redis_url=harness.url,
                                                   recommended_disk_space=1e12) as dev:
        assert dev.SaveScan(foreign.key) is False
        pub = publisher(harness, number=13, base=ro)
        pub.create()
        client = Bliss24Client(dev)
        with pytest.raises(RuntimeError, match=f"Scan writer state is FAULT: folder {ro}.* is not writable"):
            client.prepare(pub.key)
        ok = publisher(harness, number=14)
        ok.create()
        client.prepare(ok.key)
        client.check(ok.key)  # low disk space (the threshold is huge): one warning, given once
        client.check(ok.key)
        assert len(client.warnings) == 1 and client.warnings[0].startswith("Free disk space below")
        for p in (pub, ok):
            p.prepare().start()
            p.send_data()
            p.end()
    foreign.prepare().start()
    foreign.end()
    harness.state(ok.key)


# -- one-line errors without a Tango database -------------------------------------------------
@pytest.mark.parametrize("tango_host, expected", [
    (None, "TANGO_HOST is not set"),
    ("127.0.0.1:1", "cannot reach the Tango database at TANGO_HOST=127.0.0.1:1: "),
])
@pytest.mark.parametrize("command", [["RegisterNexusWriter", "test_session", "--instance", "i1"],
                                     # ESRF's lines: a bare name is the Tango instance, not a session
                                     ["RegisterNexusWriter", "bar_nexus", "--domain", "id00", "--instance",
                                      "bar_nexus", "--server", "nexuswriter", "--beacon-host", "h:1", "--log=info"],
                                     ["NexusWriterService", "bar_nexus", "--log=info", "--port", "none"],
                                     ["NexusWriterService", "--port", "none"],  # instance nexuswriters
                                     ["NexusWriterService", "i1", "--port", "0"]])
def test_no_tango_database_is_one_line_and_exit_code_2(command, tango_host, expected, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}
    if tango_host:
        env["TANGO_HOST"] = tango_host
    env["HOME"] = str(tmp_path)  # no ~/.tangorc
    env["REDIS_DATA_URL"] = "redis://127.0.0.1:1"
    result = subprocess.run([str(REPO / ".venv" / "bin" / command[0]), *command[1:]], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], lines


# -- as ESRF's device: RUNNING, stop_scan, purge_scans, scan_* attributes, log levels, options ------
def test_running_while_the_session_has_unfinished_scans():
    beat = {"pid": 10, "host": "h", "version": "1", "started": time.time()}
    state, text = checks.session_state(beat, True, None, active=2)
    assert state == "RUNNING" and text.endswith(", writing 2 scan(s)")
    assert checks.session_state(beat, True, None, active=0)[0] == "ON"
    assert checks.session_state(None, True, None, active=2)[0] == "FAULT"  # no writer: nothing runs


@pytest.mark.parametrize("values, refused", [
    ({}, []),
    ({name: False for name in options.WRITER_OPTIONS}, []),
    ({"enable_external_nonhdf5": True}, []),  # what we do anyway: EDF frames referenced
    ({"keepshape": True}, ["keepshape"]),
    ({"multivalue_positioners": True, "noconfig": True}, ["multivalue_positioners", "noconfig"]),
    ({"disable_external_hdf5": True, "copy_non_external": True}, ["disable_external_hdf5", "copy_non_external"]),
])
def test_writer_option_properties_are_honoured_or_refused(values, refused):
    texts = options.refusals(values)
    assert [t.split("=")[0].removeprefix("device property ") for t in texts] == refused
    for text in texts:
        assert "is not supported by nexus_writer_service: " in text
        assert text.endswith("; delete the property or set it to False")


def test_a_refused_writer_option_makes_the_device_fault_from_its_start(harness):
    with device(NexusWriter, session=harness.session, redis_url=harness.url, keepshape=True) as dev:
        assert dev.state() == DevState.FAULT
        assert dev.status() == (
            f"{harness.session}: device property keepshape=True (keep the shape of multi-dimensional grid "
            "scans) is not supported by nexus_writer_service: our measurement datasets stay flat (one point "
            "after the other); the mesh shape is in the default plot (plotselect, a virtual dataset); delete "
            "the property or set it to False")
    with device(NexusWriter, session=harness.session, redis_url=harness.url, enable_external_nonhdf5=True) as dev:
        assert dev.state() == DevState.ON


def test_scan_attributes_and_purge_as_esrf(harness):
    number, ident = 21, "21_ascan"
    key = publisher(harness, number=number).run()
    state = harness.state(key)
    assert state.status == "SUCCEEDED"
    with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
        assert list(dev.scan_names) == [ident]
        assert list(dev.scan_states) == [DevState.OFF]
        assert list(dev.scan_urls) == [f"{ident}: {state.file}::/{number}.1"]
        assert list(dev.scan_progress) == [f"{ident}: 6/6 points"]
        assert list(dev.scan_info) == [f"{ident}: SUCCEEDED {state.file}"]
        assert list(dev.scan_states_info) == [f"{ident}: OFF SUCCEEDED: 6 points in {state.file}"]
        start, end = time.localtime(state.started), time.localtime(state.ended)
        assert list(dev.scan_start) == [f"{ident}: {time.strftime('%Y-%m-%d %H:%M:%S', start)}"]
        assert list(dev.scan_end) == [f"{ident}: {time.strftime('%Y-%m-%d %H:%M:%S', end)}"]
        assert list(dev.scan_duration) == [f"{ident}: {state.ended - state.started:.1f} s"]
        dev.purge_scans()  # finished successfully: out of the lists (still in recent_scans)
        assert list(dev.scan_names or []) == [] and list(dev.scan_urls or []) == []
        assert dev.recent_scans[0].startswith(f"{ident} SUCCEEDED 6 ")


def test_stop_scan_finishes_the_entry_with_what_was_written(harness):
    number, ident = 22, "22_ascan"
    pub = ScanPublisher(harness.ds, relocate(load_recording("03_ascan"), harness.base, session=harness.session,
                                             number=number), batch_size=1)
    pub.create().prepare().start()
    pub.send_data(stop_after=3)
    with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
        assert wait_for(lambda: dev.scan_state(ident) == DevState.ON, 10)
        assert dev.state() == DevState.RUNNING
        assert wait_for(lambda: max((harness.writer.scans[pub.key].written or {"": 0}).values()) == 3, 10)
        dev.stop_scan(ident)
        state = harness.state(pub.key)
        assert state.status == "INCOMPLETE"
        assert "stopped on request (stop_scan): the rest of the scan is not written" in state.warnings
        assert max(state.written.values()) == 3
        assert dev.scan_state(ident) == DevState.OFF and dev.state() == DevState.ON
        with pytest.raises(DevFailed, match="no scan 99_ascan in session"):
            dev.stop_scan("99_ascan")
    pub.send_data(start_at=3)
    pub.end()
    with h5py.File(state.file, "r", locking=False) as f:
        assert f[f"{number}.1/writer/status"][()].decode() == "INCOMPLETE"
        assert len(f[f"{number}.1/measurement/diode1"]) == 3


def test_log_level_attributes(harness):
    logger = logging.getLogger("nexus_writer_service")
    before = logger.level
    try:
        with device(NexusWriter, session=harness.session, redis_url=harness.url) as dev:
            # (pytango 9: the device runs in a forked process, whose logger is its own)
            dev.writer_log_level = 1  # DEBUG, ESRF's enumeration
            assert dev.writer_log_level == 1
            if not _FORK:
                assert logger.level == logging.DEBUG
            dev.writer_log_level = 3  # WARN
            assert dev.writer_log_level == 3
            if not _FORK:
                assert logger.level == logging.WARNING
            dev.tango_log_level = 4  # ERROR
            assert dev.tango_log_level == 4
            dev.tango_log_level = 1
            assert dev.tango_log_level == 1
            # ESRF's per-scan profiling: OFF, and any other value refused with the reason
            assert dev.resource_profiling == 0
            dev.resource_profiling = 0
            with pytest.raises(DevFailed, match="resource_profiling CPU30 is not provided by nexus_writer_service"):
                dev.resource_profiling = 1
            assert dev.resource_profiling == 0
    finally:
        logger.setLevel(before)
