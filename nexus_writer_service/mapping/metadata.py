"""Scan metadata (positioners, user scan_meta categories, comments) as plan nodes.

User categories follow silx's NeXus-dict convention (``"@NX_class"`` keys,
``"energy@units"`` attribute keys); ``silx.io.dictdump.nexus_to_h5_dict`` parses
that convention so we do not re-implement it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from silx.io.dictdump import nexus_to_h5_dict

from ..nxnodes import MAX_NAME, Dataset, Group, SoftLink, attr_value, conform, field, group, link, safe_name, unique_name
from ..scaninfo_schema import SCAN_INFO_KEYS

#: scan_meta categories that are not user metadata groups
_NOT_USER_CATEGORIES = {"positioners", "nexuswriter", "instrument"}


def _scalar(value: Any):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            return str(value)
        return value if arr.dtype.kind in "biufU" else [str(v) for v in value]
    return str(value)


def nxdict_to_group(tree: dict, default_class: str = "NXcollection", warnings: list | None = None) -> Group:
    """A scan_meta category (silx NeXus-dict convention) as a plan group.

    Groups left without children (BLISS's default categories are ``{"@NX_class": ...}``
    alone; a value of None is dropped) are left out: a group is written when it has
    content, or not at all. The returned group itself may be empty: see ``is_empty``.
    Keys that HDF5 cannot take as they are (too long, characters that are not NeXus)
    are renamed, never merged with another key; ``warnings`` gets a line for each
    key shortened.
    """
    h5dict = nexus_to_h5_dict(tree, add_nx_class=False)
    return _h5dict_group(h5dict, default_class, warnings if warnings is not None else [])


def is_empty(grp: Group | None) -> bool:
    """True for a group without children (its attributes alone are no content)."""
    return grp is None or not grp.children


def _attr_name(name: str) -> str:
    # HDF5 attribute names end at a NUL: keep what follows, visibly
    return str(name).replace("\x00", "\\x00")


def _h5dict_group(h5dict: dict, default_class: str, warnings: list) -> Group:
    # one NeXus name per key, distinct even when two keys clean up alike ("a/b", "a_b")
    taken: set[str] = set()
    names: dict = {}
    for key in h5dict:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(key, tuple) and name == "":  # the group's own attributes
            continue
        if name not in names:
            names[name] = unique_name(safe_name(name), taken)
            if len(str(name)) > MAX_NAME:
                warnings.append(f"metadata key {str(name)[:40]!r}... ({len(str(name))} characters) "
                                f"written as {names[name]!r}")
    attrs: dict[str, Any] = {}
    field_attrs: dict[str, dict] = {}
    for key, value in h5dict.items():
        if isinstance(key, tuple):
            name, attr = key
            if not attr:  # "energy@": HDF5 has no nameless attributes
                continue
            if len(str(attr)) > MAX_NAME:
                warnings.append(f"metadata attribute {str(attr)[:40]!r}... ({len(str(attr))} characters) dropped")
                continue
            target = attrs if name == "" else field_attrs.setdefault(names[name], {})
            target[_attr_name(attr)] = _scalar(value)
    children: dict = {}
    for key, value in h5dict.items():
        if isinstance(key, tuple):
            continue
        if isinstance(value, dict):
            child = _h5dict_group(value, "NXcollection", warnings)
            if not is_empty(child):
                children[names[key]] = child
        elif value is not None:
            children[names[key]] = field(_scalar(value), **field_attrs.get(names[key], {}))
    nx_class = attrs.pop("NX_class", None) or default_class
    return group(nx_class, children, **attrs)


def user_categories(info: dict, warnings: list | None = None) -> dict[str, Group]:
    """Entry-level groups from scan_meta categories (sample, technique, user ones)."""
    out = {}
    for cat in info.get("scan_meta_categories") or []:
        if cat in _NOT_USER_CATEGORIES or not isinstance(info.get(cat), dict):
            continue
        default = "NXsample" if cat == "sample" else "NXcollection"
        grp = nxdict_to_group(info[cat], default, warnings)
        if not is_empty(grp):  # e.g. BLISS's default 'technique': {"@NX_class": "NXcollection"}
            out[safe_name(cat)] = grp
    return conform("NXentry", out)


def user_instrument(info: dict, warnings: list | None = None) -> Group | None:
    inst = info.get("instrument")
    if not isinstance(inst, dict):
        return None
    grp = nxdict_to_group(inst, "NXinstrument", warnings)
    if is_empty(grp):
        return None
    conform("NXinstrument", grp.children)
    return grp


def instrument_name(info: dict) -> dict:
    """The session's instrument name (BLISS config ``instrument``, via our generators)."""
    iinfo = ((info.get("nexuswriter") or {}).get("instrument_info") or {})
    name = iinfo.get("name") or ""
    short = iinfo.get("name@short_name") or ""
    if not name:
        return {}
    return {"name": field(name, short_name=short or None)}


def positioners(info: dict, scanned: dict[str, str], only: list[str] | None = None) -> dict:
    """instrument/positioners (+ _start/_end/_dial_*): every session motor, or ``only`` those.

    ``scanned`` maps a motor name to the absolute path of its scanned array:
    ``positioners/<motor>`` links there instead of holding the start value.
    """
    pos = info.get("positioners") or {}
    units = pos.get("positioners_units") or {}
    out: dict = {}

    def recorded(values):
        if isinstance(values, dict) and only is not None:
            return {m: v for m, v in values.items() if m in only}
        return values

    for key in ("positioners_start", "positioners_end", "positioners_dial_start", "positioners_dial_end"):
        values = recorded(pos.get(key))
        if isinstance(values, dict) and values:
            out[key] = group("NXcollection", {
                safe_name(m): field(_scalar(v), units=units.get(m)) for m, v in values.items()
            })
    start = recorded(pos.get("positioners_start")) or {}
    if start or scanned:
        children: dict[str, Dataset | SoftLink] = {
            safe_name(m): field(_scalar(v), units=units.get(m)) for m, v in start.items()}
        for motor, target in scanned.items():
            children[safe_name(motor)] = link(target)
        out["positioners"] = group("NXcollection", children)
    return out


def notes(info: dict) -> dict:
    """BLISS comments (scan.add_comment) at ESRF's writer's paths: one NXnote per comment,
    ``notes/note_01``, ``note_02`` ... in order, each with ``data`` (the message), ``type``
    (text/plain) and ``date``; readers of ESRF files and BLISS 2.4's h5maps look there.
    ``notes`` itself is an NXnote, the class NXentry defines for it (ESRF: NXcollection,
    which validators refuse); NeXus wants NXnote/data binary, ESRF puts the text there and
    so do we (doc/layout.md, "Where NeXus and ESRF's layout disagree")."""
    comments = [c for c in info.get("comments") or [] if isinstance(c, dict)]
    if not comments:
        return {}
    children = {}
    for i, comment in enumerate(comments, 1):
        note = {"data": field(str(comment.get("message", ""))), "type": field("text/plain")}
        if comment.get("date"):
            note["date"] = field(str(comment["date"]))
        children[f"note_{i:02d}"] = group("NXnote", note)
    return {"notes": group("NXnote", children)}


def scan_parameters(info: dict) -> dict:
    """``scan_parameters`` (NXparameters) as ESRF's writer makes it: ``count_time`` in
    seconds, the one scalar scan parameter it writes (scripts normalise by it). Left out
    when scan_info has none or it is 0 (sequences; ESRF's writer does the same)."""
    count_time = info.get("count_time")
    if isinstance(count_time, bool) or not isinstance(count_time, (int, float)):
        return {}
    if not count_time or not np.isfinite(count_time):
        return {}
    return {"scan_parameters": group("NXparameters", {"count_time": field(float(count_time), units="s")})}


def device_metadata(info: dict, channels: list, warnings: list | None = None) -> dict[str, Group]:
    """What BLISS says about each detector (``devices[*].metadata`` of the final scan_info),
    as groups below ``instrument`` named like the detector's group, as ESRF's writer dumps
    it: a lima camera's ``type``, ``description``, ``x_pixel_size``/``y_pixel_size`` (@units
    m), ``camera_settings/*``, and at the scan's end ``acq_parameters/*`` (nxtomomill reads
    the frames' exposure time in ``acq_parameters/acq_expo_time``) and ``ctrl_parameters/*``;
    Lima2's ``acq_params``; an MCA's ``type``. The silx NeXus-dict convention of scan_meta
    applies (``x_pixel_size@units``). ``channels``: the entry's ChannelPlans; every group of
    a device gets its metadata (ESRF: each MCA element's group says ``type = mca``).
    ``warnings``: keys renamed to be NeXus names, as for scan_meta."""
    devices = info.get("devices") or {}
    chans = info.get("channels") or {}
    out: dict[str, Group] = {}
    for ch in channels:
        if ch.group in out or ch.nx_class != "NXdetector":
            continue
        device = devices.get((chans.get(ch.stream) or {}).get("device")) or {}
        meta = device.get("metadata")
        if not isinstance(meta, dict) or not meta:
            continue
        grp = nxdict_to_group({k: v for k, v in meta.items() if k != "@NX_class"}, ch.nx_class, warnings)
        if not is_empty(grp):
            out[ch.group] = grp
    return out


# -- ESRF data policy: the dataset's ICAT metadata -------------------------------------
#: ``dataset_metadata_snapshot`` (BLISS, ESRF data policy): the dataset's ICAT fields at
#: the scan's start. ESRF's tools read the ``Sample*`` ones at NeXus paths below the
#: entry, as ICAT's own definitions (``icat_esrf_definitions/hdf5_cfg.xml``) place them:
#: ``<Group><Sub>..._<field>`` -> ``sample/<group>/<sub>/<field>``, one CamelCase word
#: per group level. The positioners are left out (``instrument/positioners`` has them).
#: This table gives what the rule cannot guess: a group's NX class, words that are one
#: group (``GeologicalTime`` -> ``geological_time``), fields that are not where the rule
#: puts them, and numeric fields with their units.
ICAT_SKIPPED = frozenset({"SamplePositioners_name", "SamplePositioners_value"})
ICAT_GROUP_CLASSES = {
    ("sample",): "NXsample",
    ("sample", "notes"): "NXnote",
    ("sample", "environment"): "NXenvironment",
    ("sample", "environment", "sensors"): "NXsensor",
    ("sample", "tracking"): "NXsubentry",
    ("sample", "tracking", "shipment"): "NXsubentry",
    ("sample", "tracking", "parcel"): "NXsubentry",
}
#: numbered groups (SampleSolvent01_...): the class of every number
_ICAT_NUMBERED_CLASSES = {re.compile(r"solvent\d+"): "NXsample_component"}
_ICAT_COMPOUND_WORDS = {"GeologicalTime": "geological_time"}
#: ICAT field -> path below the entry, where the rule alone would be wrong
_ICAT_PATHS = {"Sample_notes": "sample/notes/notes"}
#: numeric ICAT fields (ICAT: NX_INT / NX_NUMBER) and their units (pint spelling)
_ICAT_NUMBERS = {
    "Sample_distance": "mm", "Sample_thickness": "mm", "Sample_collection_year": None,
    "SamplePatient_number": None, "SamplePatient_age": "a", "SamplePatient_weight": "kg",
    "SamplePatient_size": "cm", "SampleTrackingParcel_storage_condition": "degC",
}
_ICAT_INTEGERS = frozenset({"SamplePatient_number", "Sample_collection_year"})
_ICAT_NUMBER_PATTERNS = {re.compile(r"SampleSolvent\d+_density"): "g/cm**3"}


def _icat_units(field_name: str) -> tuple[bool, str | None]:
    """(numeric, units) of an ICAT field."""
    if field_name in _ICAT_NUMBERS:
        return True, _ICAT_NUMBERS[field_name]
    for pattern, units in _ICAT_NUMBER_PATTERNS.items():
        if pattern.fullmatch(field_name):
            return True, units
    return False, None


def _icat_class(parts: tuple) -> str:
    if parts in ICAT_GROUP_CLASSES:
        return ICAT_GROUP_CLASSES[parts]
    for pattern, nx_class in _ICAT_NUMBERED_CLASSES.items():
        if pattern.fullmatch(parts[-1]):
            return nx_class
    return "NXcollection"


def icat_path(field_name: str) -> str | None:
    """Where ESRF's tools expect an ICAT ``Sample*`` field: ``Sample_name`` -> ``sample/name``,
    ``SampleEnvironment_name`` -> ``sample/environment/name``; None for other fields."""
    if field_name in _ICAT_PATHS:
        return _ICAT_PATHS[field_name]
    prefix, sep, name = field_name.partition("_")
    if not sep or not name or not prefix.startswith("Sample"):
        return None
    words = prefix[len("Sample"):]
    parts = ["sample"]
    for compound, joined in _ICAT_COMPOUND_WORDS.items():
        words = words.replace(compound, f"[{joined}]")
    for token in re.findall(r"\[[a-z_]+\]|[A-Z][a-z0-9]*", words):
        parts.append(token[1:-1] if token.startswith("[") else token.lower())
    if "".join(p.title().replace("_", "") for p in parts[1:]) != prefix[len("Sample"):]:
        return None  # not CamelCase words (e.g. 'Sample2_x'): not an ICAT sample field
    return "/".join(parts + [safe_name(name)])


def _icat_value(field_name: str, value: Any):
    numeric, _ = _icat_units(field_name)
    if numeric:
        try:
            number = float(value)
            return int(number) if field_name in _ICAT_INTEGERS and number.is_integer() else number
        except (TypeError, ValueError):
            pass  # ICAT keeps what the user typed: so do we
    return _scalar(value)


def _numbers(value: Any) -> list[float] | None:
    """'1 0 0, 0 1 0' / '[[1, 0], ...]' / a number -> its numbers; None if one is not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    tokens = [t for t in re.split(r"[\s,;\[\]()]+", str(value)) if t]
    try:
        return [float(t) for t in tokens] or None
    except ValueError:
        return None


def _ub_matrix(value: Any):
    numbers = _numbers(value)
    if numbers is None or len(numbers) % 9:
        return None
    return np.asarray(numbers).reshape(-1, 3, 3)  # NXsample: (n_comp, 3, 3)


def _sensor_values(value: Any):
    numbers = _numbers(value)
    return None if numbers is None else (numbers[0] if len(numbers) == 1 else numbers)


def _number(value: Any):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_SITUATIONS = ("air", "vacuum", "inert atmosphere", "oxidising atmosphere", "reducing atmosphere",
               "sealed can", "other")
#: NeXus paths where NXsample/NXsensor say what a value must be (ICAT keeps text): the
#: value NeXus takes, or None when this one cannot be (it then stays in dataset_metadata)
_NEXUS_VALUES = {
    "sample/distance": _number,
    "sample/thickness": _number,
    "sample/ub_matrix": _ub_matrix,
    "sample/environment/sensors/value": _sensor_values,
    "sample/situation": lambda v: v if str(v) in _SITUATIONS else None,
    "sample/temperature_env": lambda v: None,  # NXsample: a group (NXenvironment)
}
_NEXUS_VALUE_PATTERNS = {re.compile(r"sample/solvent\d+/density"): _number}


def _as_nexus(path: str, value: Any):
    """(fits, value) for ``path``: ``value`` as NeXus wants it there, if it can be."""
    check = _NEXUS_VALUES.get(path)
    if check is None:
        check = next((c for p, c in _NEXUS_VALUE_PATTERNS.items() if p.fullmatch(path)), None)
    if check is None:
        return True, value
    fitted = check(value)
    return fitted is not None, fitted


def dataset_metadata(info: dict) -> tuple[Group | None, Group | None]:
    """(``sample`` group, ``dataset_metadata`` collection) from BLISS's snapshot of the
    dataset's ICAT metadata (ESRF data policy); (None, None) without one.

    The ``Sample*`` fields go where ESRF's tools read them (``icat_path``) when NeXus
    takes the value there (``sample/distance`` is a number with units, ``situation``
    one of NXsample's words ...); the other fields (technique, instrument ...) and the
    sample values NeXus cannot take at their place are kept under their ICAT names in
    an NXcollection, so nothing BLISS sent is lost and the file stays valid NeXus.
    """
    snapshot = info.get("dataset_metadata_snapshot")
    if not isinstance(snapshot, dict) or not snapshot:
        return None, None
    sample = group("NXsample")
    others: dict = {}
    for key, value in snapshot.items():
        key = str(key)
        if key in ICAT_SKIPPED or value is None or value == "":
            continue
        path = icat_path(key)
        fits, nexus_value = _as_nexus(path, _icat_value(key, value)) if path else (False, None)
        if not fits or path is None:
            others[unique_name(safe_name(key), set(others))] = field(_scalar(value), icat_field=key)
            continue
        parts = path.split("/")
        parent = sample
        for depth in range(2, len(parts)):
            child = parent.children.get(parts[depth - 1])
            if not isinstance(child, Group):
                child = group(_icat_class(tuple(parts[:depth])))
                parent.children[parts[depth - 1]] = child
            parent = child
        numeric = isinstance(nexus_value, (int, float, list, np.ndarray)) and not isinstance(nexus_value, bool)
        units = _icat_units(key)[1] if numeric else None
        parent.children[parts[-1]] = field(_scalar(nexus_value) if not isinstance(nexus_value, np.ndarray)
                                           else nexus_value, units=units, icat_field=key)
    return (None if is_empty(sample) else sample), (group("NXcollection", others) if others else None)


# -- the user keys of scan_info={...} ---------------------------------------------------
#: top-level scan_info keys BLISS itself writes beside those of blissdata's ScanInfoDict
BLISS_SCAN_INFO_KEYS = frozenset({
    "name", "filename", "images_path", "start", "stop", "npoints1", "npoints2", "data_dim",
    "comments", "positioners", "scan_meta_categories", "nexuswriter", "dataset_metadata_snapshot",
    "h5maps", "writer_options",
    # scan_meta categories BLISS always has (ct scans disable scan_meta but may keep them)
    "instrument", "technique", "sample",
})


def user_scan_info_keys(info: dict) -> list[str]:
    """The top-level keys a user added with ``scan_info={...}``, in their order: neither
    blissdata's schema, nor BLISS's own, nor a scan_meta category."""
    known = SCAN_INFO_KEYS | BLISS_SCAN_INFO_KEYS | set(info.get("scan_meta_categories") or [])
    return [k for k in info if isinstance(k, str) and k not in known]


def user_scan_info(info: dict, warnings: list | None = None) -> Group | None:
    """The user keys of ``scan_info={...}`` (BLISS publishes them; ESRF's writer drops
    them) as an NXcollection; nested dictionaries are sub-collections, and the silx
    NeXus-dict convention (``"@NX_class"``, ``"energy@units"``) applies as in scan_meta."""
    keys = user_scan_info_keys(info)
    if not keys:
        return None
    grp = nxdict_to_group({k: info[k] for k in keys}, "NXcollection", warnings)
    grp.attributes["NX_class"] = attr_value("NXcollection")  # a user's '@NX_class' key does not change what it is
    return None if is_empty(grp) else grp
