"""Ask, from inside a real BLISS 2.2.1 session, whether our writer is alive.

Runs in the BLISS venv with BEACON_HOST set (see beacon.py: run_bliss_script):

    python writer_status_check.py

Sets the session up (so ``writer_status()`` finds the session name and, through Beacon,
the data Redis by itself) and prints one line ``STATUS {"alive": ..., "writer": ...,
"scans": [...], "text": "..."}``.
"""

import json
import os
import sys


def main():
    import bliss.config.static

    from nexus_writer_service.metadata import writer_status

    session = bliss.config.static.get_config().get("test_session")
    session.setup()
    try:
        status = writer_status()
        print("STATUS " + json.dumps({"alive": status.alive, "writer": status.writer,
                                      "scans": status.scans, "text": str(status)}), flush=True)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # BLISS leaves gevent greenlets and threads behind
