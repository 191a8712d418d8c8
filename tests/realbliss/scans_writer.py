"""Real BLISS 2.2.1 scans for the end-to-end writer test (tests/system/test_real_bliss.py).

Runs in the BLISS venv with BEACON_HOST set (see beacon.py: run_bliss_script):

    python scans_writer.py BASE_PATH WRITER [SCANS]

WRITER is ``null`` or ``external``; SCANS a comma-separated subset of
ct,ascan,a2scan,amesh,loopscan,timescan,aborted,sequence (default: all).

The session's setup script registers nexus_writer_service's metadata generators.
Prints ``USM {"nexuswriter": [generator names]}`` once, then one JSON line per scan, prefixed with ``SCAN ``:

    SCAN {"label": "ascan", "key": "esrf:scan:...", "number": 2, "save": true,
          "filename": null, "nexuswriter": {...}, "scan_saving_file": "/.../data.h5", ...}

``filename`` is what BLISS names (scan_info, null with writer 'null'),
``nexuswriter`` what our generators published, and ``scan_saving_file`` the file
SCAN_SAVING says a saving writer would write, computed here independently
(``data_path`` + the 'hdf5' writer's extension).
"""

import json
import os
import sys

ALL = ["ct", "ascan", "a2scan", "amesh", "loopscan", "timescan", "aborted", "sequence"]


def describe(label, scan, scan_saving):
    from bliss.scanning.writer import get_writer_class

    info = scan.scan_info
    data = getattr(scan, "_scan_data", None)
    ext = get_writer_class("hdf5").get_file_extension()
    return {
        "label": label,
        "key": getattr(data, "key", None),
        "number": info.get("scan_nb"),
        "name": info.get("type") or scan.name,
        "title": info.get("title"),
        "save": info.get("save"),
        "filename": info.get("filename"),
        "nexuswriter": info.get("nexuswriter"),
        "scan_saving_file": os.path.extsep.join((scan_saving.data_path, ext)),
        "end_reason": info.get("end_reason"),
        "group": info.get("group"),
        "npoints": info.get("npoints"),
    }


def main(argv):
    if len(argv) < 3 or argv[2] not in ("null", "external"):
        print(__doc__, file=sys.stderr)
        return 2
    base_path = os.path.abspath(argv[1])
    writer = argv[2]
    wanted = argv[3].split(",") if len(argv) > 3 else ALL

    import gevent
    import bliss.config.static
    from bliss.common.scans import a2scan, amesh, ascan, ct, loopscan, timescan
    from bliss.scanning.group import Sequence

    config = bliss.config.static.get_config()
    session = config.get("test_session")
    session.setup()
    try:
        # the setup script registered our generators; registering again must change nothing
        from bliss.scanning.scan_meta import get_user_scan_meta
        from nexus_writer_service import metadata

        metadata.register_all_metadata_generators()
        print("USM " + json.dumps({"nexuswriter": get_user_scan_meta().nexuswriter.keys}), flush=True)
        ss = session.scan_saving
        ss.base_path = base_path
        ss.writer = writer
        robx, roby = config.get("robx"), config.get("roby")
        diode1, diode2 = config.get("diode1"), config.get("diode2")
        simu1 = config.get("simu1")

        def emit(label, scan):
            print("SCAN " + json.dumps(describe(label, scan, ss)), flush=True)

        for label in wanted:
            if label == "ct":
                emit(label, ct(0.01, diode1, diode2))
            elif label == "ascan":
                emit(label, ascan(robx, 0, 1, 5, 0.01, diode1, diode2))
            elif label == "a2scan":
                emit(label, a2scan(robx, 0, 1, roby, 1, 0, 4, 0.01, diode1))
            elif label == "amesh":
                emit(label, amesh(robx, 0, 1, 3, roby, 0, 1, 2, 0.01, diode1))
            elif label == "loopscan":
                emit(label, loopscan(5, 0.01, diode1, simu1))
            elif label == "timescan":
                emit(label, timescan(0.01, diode1, npoints=5))
            elif label == "aborted":
                scan = loopscan(200, 0.02, diode1, diode2, run=False)
                task = gevent.spawn(scan.run)
                gevent.sleep(1.0)
                scan.abort()
                task.join()
                emit(label, scan)
            elif label == "sequence":
                seq = Sequence(title="my_sequence")
                children = []
                with seq.sequence_context() as scan_seq:
                    for n in (3, 4):
                        child = ascan(robx, 0, 1, n, 0.01, diode1, run=False)
                        scan_seq.add_and_run(child)
                        children.append(child)
                emit("sequence", seq.scan)
                for i, child in enumerate(children, 1):
                    emit(f"sequence_child{i}", child)
            else:
                raise ValueError(f"unknown scan {label!r}")
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # BLISS leaves gevent greenlets and threads behind: do not wait for them
    os._exit(code)
