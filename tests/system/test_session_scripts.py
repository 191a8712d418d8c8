"""The user-facing scripts of session_scripts/ against REAL BLISS 2.2.1.

Opt-in, like tests/system/test_real_bliss.py (needs the BLISS venv of ``scripts/bliss_env.sh``)::

    NXW_REAL_BLISS=1 .venv/bin/python -m pytest tests/system/test_session_scripts.py -q

One Beacon; while BLISS runs ``some_scans_bliss_as_library.py`` (writer 'null'), two
listeners follow the session: OUR ``NexusSessionWriter`` (from BLISS's own environment, the
BLISS venv, as at a beamline) and the standalone teaching example ``external_saving_example.py``,
twice: from the BLISS venv (blissdata 2.0.1) and from ``.venv`` (blissdata 2.4.5); all separate
processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
REALBLISS = REPO / "tests" / "realbliss"
SCRIPTS = REPO / "session_scripts"
SESSION = "test_session"
LABELS = ["ascan", "a2scan", "amesh", "loopscan_mca", "timescan", "user_metadata", "aborted",
          "sequence", "sequence_child1", "sequence_child2"]

sys.path.insert(0, str(REALBLISS))


def test_some_scans_is_what_the_real_bliss_tier_runs():
    """some_scans.py is exec'd in a BLISS shell; the real-BLISS tier (below) runs that very
    file through some_scans_bliss_as_library.py and checks one state per label it reports:
    the labels the file reports are exactly the ones checked, in order."""
    import ast
    import re

    path = SCRIPTS / "some_scans.py"
    tree = ast.parse(path.read_text(), str(path))
    reported = [node.args[0].value for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0))
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_report"
                and node.args and isinstance(node.args[0], ast.Constant)]
    children = [f"sequence_child{i}" for i in (1, 2)] if "sequence" in reported else []
    assert [label for label in LABELS if label not in children] == [r for r in reported if r not in children]
    library = (SCRIPTS / "some_scans_bliss_as_library.py").read_text()
    assert re.search(r'with_name\("some_scans\.py"\)', library) and "exec(compile(" in library


def test_snippet_and_example_are_standalone():
    snippet = (SCRIPTS / "session_setup_snippet.py").read_text()
    assert "from nexus_writer_service import metadata" in snippet
    assert "metadata.register_all_metadata_generators()" in snippet
    assert '# SCAN_SAVING.writer = "null"' in snippet
    example = (SCRIPTS / "external_saving_example.py").read_text()
    compile(example, "external_saving_example.py", "exec")
    assert "nexus_writer_service" not in example


real = pytest.mark.skipif(
    os.environ.get("NXW_REAL_BLISS") != "1",
    reason="real-BLISS tests are opt-in: set NXW_REAL_BLISS=1",
)


def _lines(text: str, prefix: str) -> list[dict]:
    return [json.loads(l[len(prefix) + 1:]) for l in text.splitlines() if l.startswith(prefix + " ")]


def _wait_line(path: Path, prefix: str, proc: subprocess.Popen, timeout: float,
               accept=lambda line: True) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for line in _lines(path.read_text(errors="replace"), prefix):
            if accept(line):
                return line
        assert proc.poll() is None, path.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, f"no {prefix} line: " + path.read_text(errors="replace")[-4000:]
        time.sleep(0.1)


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Beacon, our writer, the example listener; then the BLISS scans (writer 'null')."""
    build = subprocess.run(["bash", str(REPO / "scripts" / "bliss_env.sh")], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    from beacon import ours, running_beacon, run_bliss_script
    from nexus_writer_service.transport.status import StatusReader

    tmp = tmp_path_factory.mktemp("session_scripts")
    with running_beacon(tmp / "beacon") as beacon:
        url = beacon.redis_data_url
        writer_out = tmp / "writer.out"
        with open(writer_out, "wb") as log:
            writer = subprocess.Popen(
                [ours(beacon, "NexusSessionWriter"), SESSION, "--redis-url", url,
                 "--log=info", "--base-path", str(tmp / "writer_base")],
                env=beacon.env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        examples = {}  # where it runs: (process, its output, its file)
        for where, python, base_env in (("bliss_venv", beacon.bliss_venv / "bin" / "python", beacon.env),
                                        (".venv", REPO / ".venv" / "bin" / "python", os.environ)):
            env = {k: v for k, v in base_env.items() if k not in ("REDIS_DATA_URL", "BEACON_HOST")}
            out, h5 = tmp / f"example_{where.lstrip('.')}.out", tmp / f"example_{where.lstrip('.')}.h5"
            with open(out, "wb") as log:
                examples[where] = (subprocess.Popen(
                    [str(python), str(SCRIPTS / "external_saving_example.py"), SESSION, str(h5),
                     "--redis-url", url], stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=env), out, h5)
        try:
            reader, deadline = StatusReader(url), time.monotonic() + 30
            while reader.writer(SESSION) is None:  # heartbeat: our writer listens from now on
                assert writer.poll() is None, writer_out.read_text()
                assert time.monotonic() < deadline, "our writer did not start"
                time.sleep(0.1)
            for example, out, _ in examples.values():
                _wait_line(out, "LISTENING", example, 30)

            t0 = time.monotonic()
            result = run_bliss_script(SCRIPTS / "some_scans_bliss_as_library.py", beacon, timeout=120,
                                      args=[str(tmp / "data"), "null"], cwd=tmp)
            (tmp / "bliss.stdout").write_text(result.stdout)
            (tmp / "bliss.stderr").write_text(result.stderr)
            assert result.returncode == 0, result.stderr[-4000:]
            scans = {s["label"]: s for s in _lines(result.stdout, "SCAN")}
            print(f"\n[session_scripts] BLISS scans in {time.monotonic() - t0:.1f} s ({tmp})")
            assert list(scans) == LABELS, result.stdout
            # the example saved the ascan (it prints SAVED once its group is complete)
            for example, out, _ in examples.values():
                _wait_line(out, "SAVED", example, 30, lambda l: l["key"] == scans["ascan"]["key"])
            states = {label: reader.wait(s["key"], 30) for label, s in scans.items()}
            for example, out, _ in examples.values():
                _stop(example, signal.SIGINT)  # Ctrl-C: it closes its file
                assert example.returncode == 0, out.read_text()[-4000:]
            yield {"url": url, "scans": scans, "states": states,
                   "example_h5": {where: h5 for where, (_, _, h5) in examples.items()}}
        finally:
            for example, _, _ in examples.values():
                _stop(example, signal.SIGINT)
            _stop(writer)


@real
@pytest.mark.parametrize("label", LABELS)
def test_our_writer_finishes_every_scan(run, label):
    state = run["states"][label]
    assert state is not None and state["status"] == "SUCCEEDED", state


@real
def test_user_metadata_and_comment_reach_the_file(run):
    state = run["states"]["user_metadata"]
    with h5py.File(state["file"], "r", locking=False) as f:
        entry = f[state["entries"][0]]
        assert entry["instrument/my_metadata"].attrs["NX_class"] == "NXcollection"
        assert entry["instrument/my_metadata/value"][()] == 42
        assert entry["sample"].attrs["NX_class"] == "NXsample"
        assert entry["sample/name"][()].decode() == "some_scans_sample"
        assert entry["sample/description"][()].decode() == "some_scans.py sample"
        assert entry["notes"].attrs["NX_class"] == "NXnote"
        assert list(entry["notes"]) == ["note_01"]
        assert entry["notes/note_01"].attrs["NX_class"] == "NXnote"
        assert entry["notes/note_01/data"][()].decode() == "a comment from some_scans.py"
        assert entry["notes/note_01/type"][()].decode() == "text/plain"
    # set for that scan only: the next one has neither
    later = run["states"]["aborted"]
    with h5py.File(later["file"], "r", locking=False) as f:
        entry = f[later["entries"][0]]
        assert "my_metadata" not in entry["instrument"] and "notes" not in entry
        assert "description" not in entry.get("sample", {})


@real
@pytest.mark.parametrize("where", ["bliss_venv", ".venv"])  # blissdata 2.0.1, 2.4.5
def test_example_saves_the_ascan_as_published(run, where):
    from blissdata.redis_engine.store import DataStore

    key = run["scans"]["ascan"]["key"]
    scan = DataStore(run["url"]).load_scan(key)
    published = {name: np.asarray(stream[:]) for name, stream in scan.streams.items()
                 if stream.plugin is None}
    assert published
    with h5py.File(run["example_h5"][where], "r") as f:
        groups = [g for g in f.values() if g.attrs.get("scan_key") == key]
        assert len(groups) == 1, list(f)
        group = groups[0]
        measurement = group["measurement"]
        assert set(measurement) == set(published)
        for name, data in published.items():
            saved = measurement[name][()]
            assert saved.dtype == data.dtype, name
            assert saved.shape == data.shape == (6,) + data.shape[1:], name
            assert np.array_equal(saved, data, equal_nan=True), name
        assert group["scan_info/title"][()].decode() == scan.info["title"]
        assert group["scan_info/end_reason"][()].decode() == "SUCCESS"
