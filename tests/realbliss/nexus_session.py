"""A real BLISS 2.2.1 session with ``SCAN_SAVING.writer = 'nexus'``, driven from stdin
(tests/system/test_real_bliss_nexus_mode.py): the session is set up once, then each JSON line
on stdin runs one scan and gets one ``RESULT {...}`` line on stdout.

Runs in the BLISS venv with BEACON_HOST and TANGO_HOST set (see beacon.py)::

    python nexus_session.py
    {"label": "ascan", "scan": "ascan", "base_path": "/tmp/x/data"}
    RESULT {"label": "ascan", "error": null, "warnings": [], "key": "esrf:scan:...", ...}
    {"quit": true}

``scan`` is one of sct, ascan, amesh, loopscan (with the simulated MCA), aborted.
``error`` is what BLISS raised (its writer refusing the scan, with the cause), and
``warnings`` every warning BLISS logged during the scan (its writer's checks).
"""

import json
import logging
import os
import sys
import traceback


class Collect(logging.Handler):
    """BLISS's writer logs its warnings through BLISS's loggers (logtools.log_warning)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage())
        except Exception:
            self.messages.append(str(record.msg))


def describe(label, scan, scan_saving):
    info = scan.scan_info if scan is not None else {}
    data = getattr(scan, "_scan_data", None)
    return {
        "label": label,
        "key": getattr(data, "key", None),
        "number": info.get("scan_nb"),
        "identifier": getattr(scan, "identifier", None) if scan is not None else None,
        "title": info.get("title"),
        "filename": info.get("filename"),
        "data_writer": info.get("data_writer"),
        "scan_saving_file": os.path.extsep.join((scan_saving.data_path, "h5")),
        "end_reason": info.get("end_reason"),
        "npoints": info.get("npoints"),
    }


def main():
    import gevent
    import gevent.select
    import bliss.config.static
    from bliss.common.scans import amesh, ascan, loopscan, sct

    config = bliss.config.static.get_config()
    session = config.get("test_session")
    session.setup()
    ss = session.scan_saving
    ss.writer = "nexus"
    robx, roby = config.get("robx"), config.get("roby")
    diode1, diode2 = config.get("diode1"), config.get("diode2")
    simu1 = config.get("simu1")
    collect = Collect()
    logging.getLogger().addHandler(collect)
    import nexus_writer_service  # the setup script imported it: which checkout's code BLISS runs

    print("READY", os.path.dirname(os.path.abspath(nexus_writer_service.__file__)), flush=True)
    while True:
        gevent.select.select([sys.stdin], [], [])  # let BLISS's greenlets run meanwhile
        line = sys.stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        ss.base_path = os.path.abspath(cmd["base_path"])
        what, scan, error = cmd["scan"], None, None
        collect.messages = []
        try:
            if what == "sct":
                scan = sct(0.01, diode1, diode2, run=False)
            elif what == "ascan":
                scan = ascan(robx, 0, 1, 5, 0.01, diode1, diode2, run=False)
            elif what == "amesh":
                scan = amesh(robx, 0, 1, 3, roby, 0, 1, 2, 0.01, diode1, run=False)
            elif what == "loopscan":
                scan = loopscan(5, 0.01, diode1, simu1, run=False)
            elif what == "aborted":
                scan = loopscan(200, 0.02, diode1, diode2, run=False)
            else:
                raise ValueError(f"unknown scan {what!r}")
            if what == "aborted":
                task = gevent.spawn(scan.run)
                gevent.sleep(1.0)
                scan.abort()
                task.join()
            else:
                scan.run()
        except BaseException as exc:  # BLISS refusing the scan: what the user would read
            if isinstance(exc, (SystemExit, KeyboardInterrupt)) and what != "aborted":
                raise
            chain, e = [], exc
            while e is not None:
                chain.append(f"{type(e).__name__}: {e}")
                e = e.__cause__ or e.__context__
            error = " <- ".join(chain)
            traceback.print_exc()
        out = describe(cmd.get("label", what), scan, ss)
        out.update(error=error, warnings=list(collect.messages))
        print("RESULT " + json.dumps(out, default=str), flush=True)
    session.close()


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # BLISS leaves gevent greenlets and threads behind: do not wait for them
    os._exit(code)
