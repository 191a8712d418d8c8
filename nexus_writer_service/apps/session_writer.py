"""``NexusSessionWriter SESSION``: write every scan of one BLISS session to NeXus."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from .. import __version__, compression
from ..metadata.config import load_raw
from ..transport.connection import resolve_redis_url
from ..transport.status import SessionTaken
from ..writer.config import WriterConfig
from ..writer.paths import check_session_name, check_template
from ..writer.session import SessionWriter

#: exit code when another writer, alive, already writes the session
EXIT_SESSION_TAKEN = 3


def parser() -> argparse.ArgumentParser:
    defaults = WriterConfig()
    p = argparse.ArgumentParser(
        prog="NexusSessionWriter",
        description="Listen to a BLISS session and write its scans as NeXus HDF5 files.",
    )
    p.add_argument("session", help="BLISS session name")
    p.add_argument("--redis-url", help="Redis data URL (default: $REDIS_DATA_URL, else Beacon via $BEACON_HOST)")
    p.add_argument("--log", default="warning", help="log level: debug, info, warning, error (default: warning)")
    p.add_argument("--logfile", help="also log to this file")
    p.add_argument("--base-path", default=defaults.base_path,
                   help="session base folder for scans BLISS gives no file name (writer 'null'); default: current folder")
    p.add_argument("--allowed-root", action="append", default=[], metavar="DIR",
                   help="a folder the writer may write in (repeat for several; the base path is always "
                        "one): a scan whose file is elsewhere is FAILED. Give BLISS's SCAN_SAVING.base_path "
                        "(/data/visitor ...). Default: files BLISS names go anywhere except system "
                        "folders (/etc, /usr, /root ...) and hidden ones")
    p.add_argument("--default-path-template", default=defaults.default_path_template,
                   help="file for scans without a file name; fields: {base_path} {session} {scan_name} "
                        "{scan_number} {date} {user} (default: %(default)s)")
    p.add_argument("--stall-timeout", type=float, default=defaults.stall_timeout,
                   help="give up a scan that sends nothing for this many seconds (default: %(default)s)")
    p.add_argument("--recover-window", type=float, default=defaults.recover_window,
                   help="at start, write unfinished scans of the last this-many seconds (default: %(default)s; 0: none)")
    p.add_argument("--compression", default=defaults.compression,
                   help="filter for spectra and images: gzip (deflate + shuffle, every HDF5 reader opens it), "
                        "bitshuffle-lz4 (fast, readers need the plugin) or none (default: %(default)s)")
    p.add_argument("--required-disk-space", type=float, default=defaults.required_disk_space, metavar="MB",
                   help="with less free space on a file's disk nothing is written: the data wait in Redis "
                        "(default: %(default)s; as the Tango device's property)")
    p.add_argument("--recommended-disk-space", type=float, default=defaults.recommended_disk_space, metavar="MB",
                   help="with less free space a scan warns (default: %(default)s)")
    p.add_argument("--storage-wait", type=float, default=defaults.storage_wait, metavar="S",
                   help="wait at most this long for room on a disk or for a reader's file lock, and never "
                        "longer than the scan stays in Redis (default: %(default)s)")
    p.add_argument("--config", help="beamline configuration (YAML: instrument, sample, detectors, "
                                     "positioners, plots, techniques); see nexus_writer_service/metadata/config/examples")
    p.add_argument("--version", action="version", version=__version__)
    return p


def setup_logging(level: str, logfile: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if logfile:
        handlers.append(logging.FileHandler(logfile))
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger("nexus_writer_service")
    root.handlers.clear()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level.upper())
    root.propagate = False


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.log, args.logfile)
    log = logging.getLogger("nexus_writer_service")
    try:
        check_session_name(args.session)
        base_path = os.path.abspath(args.base_path)
        check_template(args.default_path_template, base_path)
        beamline = load_raw(args.config) if args.config else {}
        filter_name = compression.canonical(args.compression)
        url = resolve_redis_url(args.redis_url)
    except Exception as e:
        log.error("%s", e)
        return 2
    config = WriterConfig(
        base_path=base_path,
        allowed_roots=[os.path.abspath(r) for r in args.allowed_root],
        default_path_template=args.default_path_template,
        stall_timeout=args.stall_timeout,
        recover_window=args.recover_window,
        compression=filter_name,
        beamline=beamline,
        beamline_source=args.config or "",
        required_disk_space=args.required_disk_space,
        recommended_disk_space=args.recommended_disk_space,
        storage_wait=args.storage_wait,
    )
    writer = SessionWriter(args.session, url, config, log)

    signalled = []

    def _stop(signum, frame):
        log.info("[%s] signal %d received", args.session, signum)
        signalled.append(signum)
        writer.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # a restart in place blocks them across the exec (below): what came meanwhile is delivered now
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        writer.run()
    except SessionTaken:
        return EXIT_SESSION_TAKEN  # said in the log by the writer, one line
    # from here a stop request waits (pending) instead of killing a process that is starting
    # again without its handlers: the mask and the pending signals survive the exec, and the
    # new process takes them once its handlers are in place (then stops at once)
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    if writer.restart_reason and not signalled:  # told to stop meanwhile: stop (the next start resumes)
        # HDF5's state cannot be trusted after a write it could not do (ids it could not
        # close point at freed memory; the next link moved in any file crashes): the same
        # process (same pid, for whoever supervises it) starts again, without HDF5's teardown,
        # and resumes the unfinished scans from Redis
        log.warning("[%s] restarting in place (pid %d): %s", args.session, os.getpid(), writer.restart_reason)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # HDF5 opened its files without close-on-exec: their descriptors (and locks) would
        # outlive the exec and lock the new process out of its own files
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.execv(sys.executable, [sys.executable, "-m", "nexus_writer_service.apps.session_writer",
                                  *(sys.argv[1:] if argv is None else argv)])
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if writer.files.quarantined:
        # HDF5 crashes when it tears down files whose writes failed: leave without it
        log.warning("[%s] %d file(s) could not be written completely: %s", args.session,
                    len(writer.files.quarantined), ", ".join(h.path for h in writer.files.quarantined))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
