"""``nexus-writer status [SESSION ...]``: writers alive and their recent scans, from Redis;
``nexus-writer show FILE``: a file's tree and default plot (``apps/show.py``)."""

from __future__ import annotations

import argparse
import sys

from . import show
from ..metadata.status import WriterStatus, format_status
from ..transport.connection import resolve_redis_url
from ..transport.status import StatusReader


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexus-writer", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="writers alive and their recent scans")
    st.add_argument("sessions", nargs="*", help="sessions (default: every session seen in Redis)")
    st.add_argument("--redis-url", help="Redis data URL (default: $REDIS_DATA_URL, else Beacon)")
    st.add_argument("-n", "--count", type=int, default=10, help="recent scans per session")
    show.add_parser(sub)
    args = p.parse_args(argv)
    if args.command == "show":
        return show.run(args)
    try:
        reader = StatusReader(resolve_redis_url(args.redis_url))
        sessions = args.sessions or reader.sessions()
    except Exception as e:
        print(f"nexus-writer: {e}", file=sys.stderr)
        return 2
    if not sessions:
        print("no session writer has reported to this Redis")
        return 1
    dead = 0
    for name in sessions:
        status = WriterStatus(name, reader.writer(name), reader.recent(name, args.count))
        dead += not status.alive
        print(format_status(status))
    return 1 if dead else 0


if __name__ == "__main__":
    sys.exit(main())
