"""Scan metadata generators for the BLISS session: tell the writer what and where to write.

Users add two lines to their session's setup script::

    from nexus_writer_service import metadata
    metadata.register_all_metadata_generators()

Every scan then carries ``scan_info["nexuswriter"]`` with

* ``instrument_info``: ``{"name": ..., "name@short_name": ...}`` (beamline/instrument);
* ``devices``: counter fullname -> ``{"device_type", "device_info", ...}``;
* ``filename``: the file the 'hdf5'/'external' writer would have been given, published
  only when the scan is saved but BLISS names no file (writer ``'null'``): BLISS 2.x then
  publishes ``path``/``filename`` null and our external writer has nothing else to go on;
* ``configuration``: the session's beamline configuration (metadata/config), when its
  Beacon configuration names one: ``nexus_writer_config: ./nexus_writer.yaml`` in the
  session's YAML (BLISS's file convention: ``./`` is relative to that YAML; not ``.yml``,
  which Beacon would read as objects). Checked here, at registration, so a mistake shows
  in the session's shell as one line with file, line and key.

A saved scan that starts with no writer alive for the session (writer 'null' or
'external') logs a warning: nothing would save it.

Why through scan_meta: it is BLISS's only per-scan hook for adding to scan_info, and the
category ``nexuswriter`` is the one ESRF's blisswriter fills, so existing readers find
the same keys. Our generators have their own names (``nxw_*``): when blisswriter also
registers (it does as soon as an 'external'/'hdf5' writer object is made) both sets
run and BLISS deep-merges their dicts instead of one replacing the other.

Runs INSIDE BLISS (2.2.1, blissdata 2.0): BLISS is imported only inside functions, and
nothing here needs the writer side of this package.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import time

from .config import ConfigError
from .config.schema import validate
from .config.yamlsource import parse, read
from .status import writer_status

CATEGORY = "nexuswriter"
#: the session YAML key naming the beamline configuration file
CONFIG_KEY = "nexus_writer_config"
#: writers of BLISS that leave saving to an external writer
_EXTERNAL_WRITERS = ("null", "external")
#: a writer seen alive is not asked again for this long (scans may come every second)
_ALIVE_CACHE_S = 5.0

log = logging.getLogger("nexus_writer_service.session")
_session_config: dict = {}
_alive_seen: dict = {}
#: extension of the file a NeXus writer ('hdf5', 'external') gets from BLISS
_SAVING_WRITER = "hdf5"


def register_all_metadata_generators(config: str | None = None) -> None:
    """Register our ``nexuswriter`` generators in the session's user scan metadata.

    ``config``: a beamline configuration file, instead of the one the session's Beacon
    configuration names (``nexus_writer_config``). Call again after editing it.
    Idempotent: ``set`` replaces a generator of the same name, and categories are a set.
    Raises RuntimeError when BLISS is missing or has no user scan metadata API.
    """
    try:
        from bliss.scanning.scan_meta import get_user_scan_meta
    except ImportError as exc:
        raise RuntimeError(
            "nexus_writer_service.metadata.register_all_metadata_generators() must run inside "
            f"a BLISS session (BLISS >= 2.0 with bliss.scanning.scan_meta): {exc}"
        ) from exc
    usm = get_user_scan_meta()
    if not hasattr(usm, "add_categories"):
        raise RuntimeError("this BLISS is too old: its ScanMeta has no add_categories (need BLISS >= 2.0)")
    usm.add_categories([CATEGORY])
    category = getattr(usm, CATEGORY)
    category.set("nxw_instrument_info", fill_instrument_info)
    category.set("nxw_devices", fill_devices)
    category.set("nxw_filename", fill_filename)
    _session_config.clear()
    _session_config.update(_load_session_config(config))
    category.set("nxw_configuration", fill_configuration)
    category.set("nxw_writer_check", check_writer_alive)


def _load_session_config(path: str | None) -> dict:
    """The validated configuration, raw; {} (and one error line logged) when invalid."""
    try:
        if path is not None:
            doc = read(path)
        else:
            found = _beacon_config_text()
            if found is None:
                return {}
            doc = parse(*found)
        validate(doc)
    except ConfigError as exc:
        log.error("nexus writer configuration not used: %s", exc)
        return {}
    return doc.data or {}


def _beacon_config_text() -> tuple[str, str] | None:
    """(text, file name) of the file the session's Beacon YAML names, if any."""
    # optional: BLISS (this runs inside a BLISS session only)
    from bliss import current_session
    from bliss.config.conductor.client import get_file
    from bliss.config.static import get_config

    if current_session is None:
        return None
    node = get_config().get_config(current_session.name)
    name = node.get(CONFIG_KEY) if node is not None else None
    if not name:
        return None
    source = os.path.normpath(os.path.join(os.path.dirname(node.filename), name)) if name.startswith(".") else name
    with get_file(node, CONFIG_KEY, text=True) as f:
        return f.read(), f"beacon:{source}"


def fill_configuration(scan) -> dict:
    return {"configuration": _session_config} if _session_config else {}


def check_writer_alive(scan) -> dict:
    """Warn (BLISS shows warnings in the shell) when no writer would save this scan."""
    info = scan.scan_info
    if not info.get("save") or getattr(scan.scan_saving, "writer", None) not in _EXTERNAL_WRITERS:
        return {}
    session = info.get("session_name") or ""
    if time.monotonic() - _alive_seen.get(session, -_ALIVE_CACHE_S) < _ALIVE_CACHE_S:
        return {}
    try:
        alive = writer_status(session or None, count=0).alive
    except Exception as exc:  # never stop a scan for this
        log.warning("cannot tell whether a NeXus writer is alive for session %r: %s", session, exc)
        return {}
    if alive:
        _alive_seen[session] = time.monotonic()
    else:
        log.warning("no NeXus writer is alive for session %r: this scan (%s) is not being saved; "
                    "start one: NexusSessionWriter %s --log=info", session, info.get("title", ""), session)
    return {}


def fill_instrument_info(scan) -> dict:
    """Beamline/instrument names, looked up as blisswriter does (same result when both run):
    $BEAMLINE / config root ``beamline`` / session ``scan_saving`` config / SCAN_SAVING.beamline
    for the short name, config root ``instrument`` (else institute-beamline) for the name."""
    # optional: BLISS (this runs inside a BLISS session only)
    from bliss import current_session
    from bliss.config.static import get_config

    root = get_config().root
    short = ""
    for key in ("BEAMLINENAME", "BEAMLINE"):
        short = os.environ.get(key, short)
    short = root.get("beamline", short)
    ss_config = getattr(current_session, "scan_saving_config", None) or {}
    short = ss_config.get("beamline", short)
    short = getattr(scan.scan_saving, "beamline", None) or short
    short = str(short or "").lower()
    institute = root.get("synchrotron", root.get("laboratory", root.get("institute", "")))
    name = institute
    if short and short not in institute.lower():
        name = f"{institute}-{short}" if institute else short
    name = root.get("instrument", name)
    return {"instrument_info": {"name": str(name or ""), "name@short_name": short}}


def fill_devices(scan) -> dict:
    """What kind of device each channel of the scan comes from (BLISS only says which
    acquisition object produced it): keyed like ``scan_info["channels"]``."""
    # optional: BLISS (this runs inside a BLISS session only)
    from bliss import global_map

    channels = scan.scan_info.get("channels") or {}
    devices = {}
    for ctr in global_map.get_counters_iter():
        try:
            fullname = ctr.fullname.replace(".", ":")
        except AttributeError:
            continue
        if fullname not in channels:
            continue
        device = _device_of(ctr)
        devices[fullname] = device
        alias = global_map.aliases.get_alias(ctr)
        if alias:
            device["alias"] = alias
        # SAMPLES/STATS sampling counters publish extra channels named after the counter
        for extra in channels:
            if extra.startswith(fullname + "_") and extra not in devices and device["device_type"] == "samplingcounter":
                devices[extra] = {"device_info": dict(device["device_info"]), "device_type": "samplingcounter"}
    for name, chan in channels.items():
        if name.startswith("axis:") and name not in devices:
            info = {"type": "positioner"}
            if chan.get("unit"):
                info["units"] = chan["unit"]
            devices[name] = {"device_info": info, "device_type": "positioner"}
    return {"devices": devices}


# (module, class, device_type, device_info type), most specific first; imported lazily
# because optional controllers (lima2, mosca...) may be missing from a BLISS install.
_COUNTER_KINDS = (
    ("bliss.controllers.mca.mythen", "MythenCounter", "mythen", "mythen"),
    ("bliss.controllers.mca.mythen", "RoiMythenCounter", "mythen", "mythen"),
    ("bliss.controllers.mca.counter", "BaseMcaCounter", "mca", "mca"),
    ("bliss.controllers.mosca.counters", "SpectrumCounter", "mosca", "mca"),
    ("bliss.controllers.mosca.counters", "StatCounter", "mosca", "mca"),
    ("bliss.controllers.mosca.counters", "ROICounter", "mosca", "mca"),
    ("bliss.controllers.lima.bpm", "LimaBpmCounter", "lima", "lima"),
    ("bliss.controllers.lima.image", "ImageCounter", "lima", "lima"),
    ("bliss.controllers.lima.counters", "RoiStatCounter", "lima", "lima"),
    ("bliss.controllers.lima.counters", "RoiProfileCounter", "lima", "lima"),
    ("bliss.controllers.lima.counters", "RoiCollectionCounter", "lima", "lima"),
    ("bliss.controllers.lima2.counter", "FrameCounter", "lima2", "lima"),
    ("bliss.controllers.lima2.counter", "RoiStatCounter", "lima2", "lima"),
    ("bliss.common.auto_filter.counters", "AutoFilterCalcCounter", "autofilter", "autofilter"),
)


@functools.lru_cache(maxsize=1)
def _counter_classes() -> tuple:
    out = []
    for module, cls_name, device_type, info_type in _COUNTER_KINDS:
        try:
            out.append((getattr(importlib.import_module(module), cls_name), device_type, info_type))
        except (ImportError, AttributeError):
            continue
    return tuple(out)


def _device_of(ctr) -> dict:
    # optional: BLISS (this runs inside a BLISS session only)
    from bliss.common.counter import SamplingCounter

    for cls, device_type, info_type in _counter_classes():
        if isinstance(ctr, cls):
            return {"device_info": {"type": info_type}, "device_type": device_type}
    if isinstance(ctr, SamplingCounter):
        return {"device_info": {"type": "samplingcounter", "mode": ctr.mode.name},
                "device_type": "samplingcounter", "data_type": "signal"}
    return {"device_info": {"type": type(ctr).__name__.lower()}, "device_type": "generic"}


def fill_filename(scan) -> dict:
    """The file a saving NeXus writer would get, when BLISS names none (writer 'null').

    Same computation as BLISS's ``FileWriter.get_filename``: the scan's writer object
    already holds the session's SCAN_SAVING templates (base_path/template/data_filename,
    resolved when the scan was made) and the scan's own fields (scan_name, scan_number,
    session); only the extension of a saving writer is missing. No writer object is
    instantiated: a NeXus one would register blisswriter's generators as a side effect.
    """
    if not scan.scan_info.get("save") or scan.scan_info.get("filename"):
        return {}
    # optional: BLISS (this runs inside a BLISS session only)
    from bliss.scanning.writer import get_writer_class

    writer = scan.writer
    if writer.saving_enabled():  # BLISS names the file itself (identity path)
        return {}
    ext = get_writer_class(_SAVING_WRITER).get_file_extension()
    template = writer._template_dict
    dirname = writer._root_path_template.format(**template)
    basename = writer._data_filename_template.format(**template)
    return {"filename": os.path.join(dirname, os.path.extsep.join((basename, ext)))}
