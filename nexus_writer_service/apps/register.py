"""``RegisterNexusWriter SESSION --domain D --instance I``: put the session's device in the Tango database.

Same command and defaults as ESRF's blisswriter: device ``D/bliss_nxwriter/SESSION``
of class ``NexusWriter`` (what BLISS's writer mode ``'nexus'`` looks for), property
``session`` (and ``beacon_host`` with ``--beacon-host``), in the server
``NexusWriterService/I`` that ``NexusWriterService --tango I`` runs. ``--class
BlissWriter`` (or ``both``) adds the device of BLISS 2.4's ``'mapping'`` mode
(``D/blisswriter/SESSION``). Registering again changes nothing; a second device
for the same session and class is refused: BLISS would not know which to use.
"""

from __future__ import annotations

import argparse
import os
import sys

FAMILIES = {"NexusWriter": "bliss_nxwriter", "BlissWriter": "blisswriter"}


def default_domain() -> str:
    for name in ("BEAMLINENAME", "BEAMLINE"):
        if os.environ.get(name):
            return os.environ[name].lower()
    return "id00"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="RegisterNexusWriter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="BLISS session name")
    p.add_argument("--domain", default="", help="device domain (default: $BEAMLINENAME, $BEAMLINE, else id00)")
    p.add_argument("--family", default="", help="device family (default: bliss_nxwriter; blisswriter for BlissWriter)")
    p.add_argument("--member", default="", help="device member (default: the session name)")
    p.add_argument("--instance", default="", help="server instance: NexusWriterService --tango INSTANCE (default: the session name)")
    p.add_argument("--server", default="", help="server name (default: NexusWriterService)")
    p.add_argument("--beacon-host", default="", help="host:port of the session's Beacon (BLISS compares it with its $BEACON_HOST)")
    p.add_argument("--redis-url", default="", help="Redis data URL for the device (default: the service's)")
    p.add_argument("--class", dest="classes", choices=["NexusWriter", "BlissWriter", "both"], default="NexusWriter",
                   help="which device: NexusWriter (BLISS writer 'nexus'), BlissWriter (BLISS 2.4 'mapping'), both")
    p.add_argument("--property", action="append", default=[], metavar="NAME=VALUE",
                   help="another device property, e.g. required_disk_space=500 (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from ..tango import server as ts
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
    server = f"{args.server or ts.SERVER}/{args.instance or args.session}"
    classes = ["NexusWriter", "BlissWriter"] if args.classes == "both" else [args.classes]
    code = 0
    for cls in classes:
        name = "/".join([args.domain or default_domain(), args.family or FAMILIES[cls], args.member or args.session])
        try:
            print(register(db, ts, cls, name, server, args.session, args.beacon_host, args.redis_url, extra))
        except (RuntimeError, ValueError) as exc:
            print(f"RegisterNexusWriter: {exc}", file=sys.stderr)
            code = 1
        except ts.tango.DevFailed as exc:  # from the database: one line
            print(f"RegisterNexusWriter: the Tango database refused {name}: {ts.reason(exc)}", file=sys.stderr)
            code = 2
    return code


def register(db, ts, cls: str, name: str, server: str, session: str, beacon_host: str = "",
             redis_url: str = "", extra: dict | None = None) -> str:
    """Add (or confirm) one device; returns the line to print. RuntimeError when BLISS
    would then find two devices for the session, or the name belongs to another device."""
    import tango

    for other in ts.session_devices(db, session, cls):
        if other.name.lower() != name.lower():
            raise RuntimeError(f"session {session!r} already has the {cls} device {other.name} "
                               f"(server {other.server}): BLISS would find two; remove it first "
                               f"(e.g. with jive, or tango.Database().delete_device)")
    try:
        info = db.get_device_info(name)
        existing = (info.class_name, info.ds_full_name)
    except (tango.DevFailed, RuntimeError):  # NosqlTangoDB (Beacon) answers a missing one with
        existing = None                      # an exception pytango 10 cannot convert
    if existing is not None and (existing[0] != cls or existing[1].lower() != server.lower()):
        raise RuntimeError(f"{name} is already a device of class {existing[0]} in server {existing[1]}")
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
    instance = server.split("/", 1)[1]
    what = "already registered" if existing else "registered"
    return (f"{name} {what} (class {cls}, server {server}, session {session}); "
            f"run it with: NexusWriterService --tango {instance}")


if __name__ == "__main__":
    sys.exit(main())
