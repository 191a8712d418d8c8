"""The scans of some_scans.py with BLISS as a library (no BLISS shell).

    BEACON_HOST=host:port python some_scans_bliss_as_library.py BASE_PATH [WRITER] [SESSION]

BASE_PATH is SCAN_SAVING.base_path; WRITER is SCAN_SAVING.writer, ``null`` (default:
BLISS writes nothing, the external writer does) or ``external``; SESSION defaults to
``test_session`` (it needs the test configuration objects robx, roby, diode1, diode2, simu1).
Prints one JSON line per scan (``SCAN {...}``), as some_scans.py does.
"""

import os
import sys
from pathlib import Path


def main(argv):
    if len(argv) < 2 or (len(argv) > 2 and argv[2] not in ("null", "external")):
        print(__doc__, file=sys.stderr)
        return 2
    import bliss.config.static

    config = bliss.config.static.get_config()
    session = config.get(argv[3] if len(argv) > 3 else "test_session")
    session.setup()  # runs the session's setup script (metadata generators registered there)
    try:
        session.scan_saving.base_path = os.path.abspath(argv[1])
        session.scan_saving.writer = argv[2] if len(argv) > 2 else "null"
        namespace = {name: config.get(name) for name in ("robx", "roby", "diode1", "diode2", "simu1")}
        path = Path(__file__).resolve().with_name("some_scans.py")
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # BLISS leaves gevent greenlets and threads behind: do not wait for them
