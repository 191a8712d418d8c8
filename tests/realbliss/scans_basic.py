"""A few basic scans in a real BLISS 2.2.1 session (library mode, no shell).

Runs in the BLISS venv with BEACON_HOST set (see beacon.py: run_bliss_script):

    python scans_basic.py BASE_PATH [null|external]

Prints one JSON line per scan, prefixed with ``SCAN `` so a test can pick them from the
rest of BLISS's output:

    SCAN {"number": 2, "name": "ascan", "title": "ascan robx 0 1 5 0.01", "path": null,
          "key": "esrf:scan:...", "save": true, "points": 6}

``path`` is the file BLISS asks the writer to write (``scan_info["filename"]``); BLISS 2.x
gives none with the writer ``'null'``.
"""

import json
import os
import sys


def main(argv):
    if len(argv) < 2 or (len(argv) > 2 and argv[2] not in ("null", "external")):
        print(__doc__, file=sys.stderr)
        return 2
    base_path = os.path.abspath(argv[1])
    writer = argv[2] if len(argv) > 2 else "null"

    import bliss.config.static
    from bliss.common.scans import amesh, ascan, ct, loopscan

    config = bliss.config.static.get_config()
    session = config.get("test_session")
    session.setup()
    try:
        session.scan_saving.base_path = base_path
        session.scan_saving.writer = writer
        robx, roby = config.get("robx"), config.get("roby")
        diode1, diode2 = config.get("diode1"), config.get("diode2")
        simu1 = config.get("simu1")

        scans = [
            ct(0.05, diode1, diode2),
            ascan(robx, 0, 1, 5, 0.01, diode1, diode2),
            amesh(robx, 0, 1, 3, roby, 0, 1, 2, 0.01, diode1),
            loopscan(5, 0.01, diode1, simu1),
        ]
        for scan in scans:
            info = scan.scan_info
            data = getattr(scan, "_scan_data", None)  # the blissdata Scan it published
            line = {
                "number": info.get("scan_nb"),
                "name": info.get("type"),
                "title": info.get("title"),
                "path": info.get("filename"),
                "key": getattr(data, "key", None),
                "save": info.get("save"),
                "points": info.get("npoints"),
            }
            print("SCAN " + json.dumps(line), flush=True)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # BLISS leaves gevent greenlets and threads behind: do not wait for them
    os._exit(code)
