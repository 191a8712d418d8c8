"""``RegisterNexusWriter SESSION``: put the session's device in the Tango database.

ESRF's command, options and defaults: device ``DOMAIN/bliss_nxwriter/SESSION`` (``--domain``
default ``$BEAMLINENAME``, ``$BEAMLINE``, else ``id00``; ``--family``, ``--member``) of class
``NexusWriter`` (what BLISS's writer mode ``'nexus'`` looks for) in the Tango server
``nexuswriter/SESSION`` (``--server``, ``--instance``), properties ``session`` and, with
``--beacon-host``, ``beacon_host``. A device that already writes the session (same
Beacon host) is reused as it is, exit code 0; ``--ignore_existing`` registers the new
name anyway. ``NexusWriterService INSTANCE [--server SERVER]`` then serves it.

Ours on top: ``--class BlissWriter`` (or ``both``) for BLISS 2.4's ``'mapping'`` mode
(``DOMAIN/blisswriter/SESSION``), ``--property NAME=VALUE`` for any other device property
(also applied to a reused device), ``--redis-url``.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import logconfig

FAMILIES = {"NexusWriter": "bliss_nxwriter", "BlissWriter": "blisswriter"}
SERVER = "nexuswriter"


def default_domain() -> str:
    for name in ("BEAMLINENAME", "BEAMLINE"):
        if os.environ.get(name):
            return os.environ[name].lower()
    return "id00"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="RegisterNexusWriter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="BLISS session name")
    p.add_argument("--server", default=SERVER, help="Tango server name (default: %(default)s)")
    p.add_argument("--instance", default="", help="Tango server instance (default: the session name)")
    p.add_argument("--domain", default="", help="device domain (default: $BEAMLINENAME, $BEAMLINE, else id00)")
    p.add_argument("--family", default="", help="device family (default: bliss_nxwriter; blisswriter for BlissWriter)")
    p.add_argument("--member", default="", help="device member (default: the session name)")
    p.add_argument("--ignore_existing", action="store_false", dest="use_existing",
                   help="register this device even when another one already writes the session")
    p.add_argument("--beacon-host", default="", help="host:port of the session's Beacon (BLISS compares it with its $BEACON_HOST)")
    p.add_argument("--redis-url", default="", help="Redis data URL for the device (default: the service's)")
    p.add_argument("--class", dest="classes", choices=["NexusWriter", "BlissWriter", "both"], default="NexusWriter",
                   help="which device: NexusWriter (BLISS writer 'nexus'), BlissWriter (BLISS 2.4 'mapping'), both")
    p.add_argument("--property", action="append", default=[], metavar="NAME=VALUE",
                   help="another device property, e.g. required_disk_space=500 (repeatable)")
    logconfig.add_options(p, default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logconfig.configure(args)
    try:
        from ..tango import server as ts  # optional: pytango (the [tango] extra)
    except ImportError as exc:
        print(f"RegisterNexusWriter: pytango is missing ({exc}): pip install 'nexus_writer_service[tango]'",
              file=sys.stderr)
        return 2
    extra = {}
    for item in args.property:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"RegisterNexusWriter: --property {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        extra[name] = value
    try:
        db = ts.database()
    except ts.TangoSetupError as exc:
        print(f"RegisterNexusWriter: {exc}", file=sys.stderr)
        return 2
    server = f"{args.server}/{args.instance or args.session}"
    classes = ["NexusWriter", "BlissWriter"] if args.classes == "both" else [args.classes]
    code = 0
    for cls in classes:
        name = "/".join([args.domain or default_domain(), args.family or FAMILIES[cls], args.member or args.session])
        try:
            existing = reusable(db, ts, cls, args.session, args.beacon_host) if args.use_existing else None
            if existing is not None:
                print(reuse(db, existing, name, extra))
            else:
                print(register(db, ts, cls, name, server, args.session, args.beacon_host, args.redis_url, extra))
        except (RuntimeError, ValueError) as exc:
            print(f"RegisterNexusWriter: {exc}", file=sys.stderr)
            code = 1
        except ts.tango.DevFailed as exc:  # from the database: one line
            print(f"RegisterNexusWriter: the Tango database refused {name}: {ts.reason(exc)}", file=sys.stderr)
            code = 2
    return code


def _run_hint(server: str) -> str:
    name, instance = server.split("/", 1)
    return f"NexusWriterService {instance}" + ("" if name == SERVER else f" --server {name}")


def reusable(db, ts, cls: str, session: str, beacon_host: str = ""):
    """The device of class ``cls`` that already writes ``session`` (as BLISS would find it:
    same Beacon host when both say one), or None. Two of them: RuntimeError (BLISS refuses)."""
    found = [d for d in ts.session_devices(db, session, cls)
             if not beacon_host or not d.beacon_host or d.beacon_host == beacon_host]
    if len(found) > 1:
        raise RuntimeError(f"session {session!r} already has {len(found)} {cls} devices "
                           f"({', '.join(d.name for d in found)}): BLISS refuses to choose; remove all "
                           f"but one (e.g. with jive, or tango.Database().delete_device)")
    return found[0] if found else None


def reuse(db, existing, name: str, extra: dict | None = None) -> str:
    """ESRF's behaviour: the device that already writes the session is kept as it is."""
    if extra:
        db.put_device_property(existing.name, dict(extra))
    other = "" if existing.name.lower() == name.lower() else f" (not registering {name})"
    return (f"{existing.name} already registered (class {existing.cls}, server {existing.server}, "
            f"session {existing.session}){other}; run it with: {_run_hint(existing.server)}")


def register(db, ts, cls: str, name: str, server: str, session: str, beacon_host: str = "",
             redis_url: str = "", extra: dict | None = None) -> str:
    """Add (or confirm) one device; returns the line to print. RuntimeError when the name
    belongs to another class, server or session."""
    import tango  # the [tango] extra (main() says when it is missing)

    try:
        info = db.get_device_info(name)
        existing = (info.class_name, info.ds_full_name)
    except (tango.DevFailed, RuntimeError):  # NosqlTangoDB (Beacon) answers a missing one with
        existing = None                      # an exception pytango 10 cannot convert
    if existing is not None and (existing[0] != cls or existing[1].lower() != server.lower()):
        raise RuntimeError(f"{name} is already a device of class {existing[0]} in server {existing[1]}")
    if existing is not None:
        current = ts.property_value(db, name, "session")
        if current and current != session:
            raise RuntimeError(f"{name} writes BLISS session {current!r}, not {session!r}")
    if existing is None:
        dev = tango.DbDevInfo()
        dev.name, dev._class, dev.server = name, cls, server
        db.add_device(dev)
    properties = {"session": session, **(extra or {})}
    if beacon_host:
        properties["beacon_host"] = beacon_host
    if redis_url:
        properties["redis_url"] = redis_url
    db.put_device_property(name, properties)
    what = "already registered" if existing else "registered"
    return f"{name} {what} (class {cls}, server {server}, session {session}); run it with: {_run_hint(server)}"


if __name__ == "__main__":
    sys.exit(main())
