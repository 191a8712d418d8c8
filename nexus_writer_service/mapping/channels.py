"""Where each data channel goes: entry, instrument group, field, short name.

BLISS's own naming (what ESRF tools read, and what ``Hdf5BackedStream`` publishes
as ``data_path``) is followed: motors ``instrument/<motor>/value``, counters
``instrument/<counter>/data``, MCA ``instrument/<mca>_det<N>/spectrum`` with its
statistics renamed. When BLISS announces a ``data_path`` we use it verbatim
(readers fall back to that exact place when Redis has trimmed the stream),
unless it is unsafe or outside the scan's entries.
"""

from __future__ import annotations

import re
from typing import Mapping

from ..channelplan import SPECTRUM_ROLES, SPECTRUM_UNITS, ChannelPlan
from ..descriptions import KindTraits, ScanDescription, StreamDescription
from ..nxnodes import PRIMARY_FIELDS, is_safe_relative_path, safe_name, unique_name

_MCA_STAT = re.compile(
    r"^(spectrum|realtime|trigger_livetime|energy_livetime|triggers|events|icr|ocr|deadtime)_det(\w+)$"
)
_MCA_ROI_DET = re.compile(r"^(.+)_det(\w+)$")
MCA_FIELDS = {
    "spectrum": "spectrum",
    "realtime": "elapsed_time",
    "trigger_livetime": "trigger_live_time",
    "energy_livetime": "live_time",
    "triggers": "triggers",
    "events": "events",
    "icr": "trigger_count_rate",
    "ocr": "event_count_rate",
    "deadtime": "fractional_dead_time",
}
#: units of the MCA statistics, which BLISS (simulated/XIA MCA, MOSCA) publishes without:
#: times in seconds, count rates in hertz, counts, and the dead time as a fraction
#: (``1``: NeXus NX_DIMENSIONLESS, as pynxtools spells it). ESRF's writer puts ``s`` on
#: the times and ``hertz`` on the trigger rate only; a reader needs them on all.
MCA_UNITS = {
    "realtime": "s",
    "trigger_livetime": "s",
    "energy_livetime": "s",
    "triggers": "counts",
    "events": "counts",
    "icr": "hertz",
    "ocr": "hertz",
    "deadtime": "1",
}


def mca_statistic(name: str, info: dict) -> str | None:
    """The MCA statistic a channel is (``realtime``, ``icr`` ... as BLISS names them), or None.

    ``<mca>:realtime_det0`` (BLISS MCA) and ``<mca>:stat:realtime_det00`` (MOSCA), of a
    device BLISS says is an MCA.
    """
    m = _MCA_STAT.match(name.rpartition(":")[2])
    if not m or m.group(1) == "spectrum":
        return None
    dev = _device(info, name)
    is_mca = dev.get("type") == "mca" or (dev.get("metadata") or {}).get("type") == "mca"
    return m.group(1) if is_mca else None


def mca_energy_calibration(ch: "ChannelPlan", detectors: Mapping | None) -> tuple[float, ...] | None:
    """The beamline's ``energy_calibration`` of a spectrum channel (channel -> keV), looked
    up as the configuration names detectors: channel, counter, BLISS's group, group, controller."""
    ctrl = ch.stream.rpartition(":")[0].partition(":")[0]
    for key in (ch.stream, ch.display_name, ch.bliss_group, ch.group, ctrl):
        det = (detectors or {}).get(key) if key else None
        if det is not None and getattr(det, "energy_calibration", None):
            return tuple(float(c) for c in det.energy_calibration)
    return None


def entry_names(desc: ScanDescription) -> list[tuple[str, str]]:
    """(entry name, top master) per top master: N.1, N.2, ... in acquisition-chain order."""
    chain = desc.info.get("acquisition_chain") or {}
    masters = list(chain) or ["default"]
    return [(f"{desc.number}.{i}", m) for i, m in enumerate(masters, 1)]


def _channel_master(info: dict) -> dict[str, tuple[str, bool]]:
    """channel -> (top master name, is a master channel of it)."""
    out = {}
    for master, chain in (info.get("acquisition_chain") or {}).items():
        if not isinstance(chain, dict):
            continue
        mchans = chain.get("master") or {}
        for kind in ("scalars", "spectra", "images"):
            for ch in mchans.get(kind, []) or []:
                out[ch] = (master, True)
        for kind in ("scalars", "spectra", "images"):
            for ch in chain.get(kind, []) or []:
                out.setdefault(ch, (master, False))
    return out


def _device(info: dict, channel: str) -> dict:
    ch = (info.get("channels") or {}).get(channel) or {}
    return (info.get("devices") or {}).get(ch.get("device"), {}) or {}


_MOSCA_ELEMENT = re.compile(r"^spec_det(\w+)$")


def _derive(name: str, stream: StreamDescription, info: dict, is_master: bool,
            frame_dets: frozenset = frozenset(), kind_role: str | None = None) -> tuple[str, str, str, str]:
    """(group, field, nx_class, role) from BLISS's channel naming (``kind_role``: the
    role the stream's kind imposes, if any)."""
    ctrl, _, short = name.rpartition(":")
    det, _, sub = ctrl.partition(":")
    if kind_role == "spectrum_files":  # <mca>:spectrum:spec_det<NN>: with the element's statistics
        m = _MOSCA_ELEMENT.match(short)
        return (f"{det}_det{m.group(1)}" if m else (det or short)), "spectrum", "NXdetector", kind_role
    if kind_role == "events":
        return ctrl.replace(":", "_") or short, short if ctrl else "data", "NXcollection", kind_role
    if kind_role != "frames" and det in frame_dets:
        # lima ROI counters (<det>:roi_counters:roi1_sum), BPM (<det>:bpm:x), frame metadata:
        # with the frames, under the detector's group
        fld = short if sub in ("", "roi_counters", "roi_profiles") else f"{sub.replace(':', '_')}_{short}"
        role = {0: "counter", 1: "spectrum"}.get(len(stream.shape), "image")
        return det, fld, "NXdetector", role
    chinfo = (info.get("channels") or {}).get(name) or {}
    display = chinfo.get("display_name") or short or name
    ndim = len(stream.shape)
    dev = _device(info, name)
    is_mca = dev.get("type") == "mca" or (dev.get("metadata") or {}).get("type") == "mca"
    if kind_role == "frames":
        return ctrl or display, "data", "NXdetector", "frames"
    if ctrl == "axis":
        return display, "value", "NXpositioner", "axis"
    if ctrl == "timer" or (is_master and chinfo.get("unit") == "s"):
        # the top master's timer is what the scan steps (ESRF: an NXpositioner, in positioners)
        if is_master:
            return display, "value", "NXpositioner", "timer"
        return display, "data", "NXdetector", "timer"
    m = _MCA_STAT.match(short)
    if m and (is_mca or m.group(1) == "spectrum"):
        kind, element = m.groups()
        role = "spectrum" if kind == "spectrum" else "counter"
        # <mca>:realtime_det0 (BLISS MCA) and <mca>:stat:realtime_det00 (MOSCA): one group per element
        return f"{det}_det{element}", MCA_FIELDS[kind], "NXdetector", role
    if is_mca:
        m = _MCA_ROI_DET.match(short)
        if m:
            return f"{det}_det{m.group(2)}", m.group(1), "NXdetector", "counter"
        return f"{det}_sum", short, "NXdetector", "counter"
    role = {0: "counter", 1: "spectrum"}.get(ndim, "image")
    return display, "data", "NXdetector", role


#: what ESRF's writer writes of BLISS's ``nexuswriter.devices[channel].device_info`` in the
#: channel's detector group (a counter's ``type`` samplingcounter and ``mode`` MEAN...)
DEVICE_INFO_FIELDS = ("type", "mode")


def _device_info(info: dict, channel: str, nx_class: str) -> dict:
    if nx_class != "NXdetector":
        return {}
    devices = (info.get("nexuswriter") or {}).get("devices")
    device = devices.get(channel) if isinstance(devices, dict) else None
    dinfo = device.get("device_info") if isinstance(device, dict) else None
    if not isinstance(dinfo, dict):
        return {}
    return {k: dinfo[k] for k in DEVICE_INFO_FIELDS if isinstance(dinfo.get(k), str) and dinfo[k]}


def _configured(detectors: Mapping, stream: str, ctrl: str, display: str, grp: str):
    """The beamline configuration of a channel: by channel, name, NeXus group, controller."""
    for key in (stream, display, grp, ctrl):
        if key and key in detectors:
            return key, detectors[key]
    return None, None


def _apply_detector(cfg, key: str, ctrl: str, grp: str, units: str | None) -> tuple[str, str | None, dict]:
    """(group, units, static fields): a controller's name also renames its sub-groups (mca_det0)."""
    if cfg.name:
        grp = cfg.name + grp[len(ctrl):] if key == ctrl and grp.startswith(ctrl) and grp != ctrl else cfg.name
    static = {k: v for k, v in (("type", cfg.type), ("description", cfg.description)) if v}
    return grp, units or cfg.units, static


def plan_channels(desc: ScanDescription, detectors: Mapping | None = None
                  ) -> tuple[list[ChannelPlan], dict[str, str]]:
    """Channel plans for every stream whose kind has a place in the file, and the
    streams left out with why.

    ``detectors`` (beamline configuration: name -> DetectorConfig) renames groups and
    gives units where BLISS has none; BLISS's own units win.
    """
    detectors = detectors or {}
    info = desc.info
    entries = dict((m, e) for e, m in entry_names(desc))
    first_entry = entry_names(desc)[0][0]
    masters = _channel_master(info)
    plans: list[ChannelPlan] = []
    skipped: dict[str, str] = {}
    groups_taken: dict[str, set] = {}
    fields_taken: dict[tuple[str, str], set] = {}
    order = {ch: i for i, ch in enumerate(masters)}
    traits = {s.name: _traits(s) for s in desc.streams}
    frame_dets = frozenset(s.name.rpartition(":")[0].partition(":")[0] for s in desc.streams
                          if traits[s.name].role == "frames")
    for stream in sorted(desc.streams, key=lambda s: order.get(s.name, len(order))):
        kind = traits[stream.name]
        if not kind.has_channel:
            reason = kind.unsaved_reason
            if reason:
                skipped[stream.name] = reason
            continue
        chinfo = (info.get("channels") or {}).get(stream.name) or {}
        if chinfo.get("no_saving"):  # BLISS says this channel is not saved: not ours to write
            continue
        master, is_master = masters.get(stream.name, (None, False))
        entry = entries.get(master, first_entry) if master is not None else first_entry
        group, fld, nx_class, role = _derive(stream.name, stream, info, is_master, frame_dets, kind.role)
        group, fld = safe_name(group), safe_name(fld)
        note = None
        data_path = kind.data_path
        if data_path:
            head, _, rel = str(data_path).partition("/")
            parts = rel.split("/")
            if (head in entries.values() and len(parts) == 3 and parts[0] == "instrument"
                    and is_safe_relative_path(rel)):
                entry, group, fld = head, parts[1], parts[2]
            else:
                note = f"announced data_path {data_path!r} is not usable; written elsewhere"
        units, bliss_group = chinfo.get("unit"), None
        static: dict = _device_info(info, stream.name, nx_class)
        ctrl = stream.name.rpartition(":")[0].partition(":")[0]
        key, cfg = _configured(detectors, stream.name, ctrl, chinfo.get("display_name") or "", group)
        if cfg is not None:
            named, units, configured = _apply_detector(cfg, key, ctrl, group, units)
            static = {**static, **configured}  # the beamline's type wins
            if data_path and named != group and not note:
                bliss_group = group  # BLISS's data_path still leads there (a link)
            group = safe_name(named)
        if units is None and role == "counter":  # BLISS's and the beamline's units win
            units = MCA_UNITS.get(mca_statistic(stream.name, info) or "")
        elif units is None and role in SPECTRUM_ROLES:
            units = SPECTRUM_UNITS
        taken = groups_taken.setdefault(entry, set())
        if (entry, group) not in fields_taken:
            if group in taken:  # two devices with one display name
                group = unique_name(safe_name(stream.name), taken)
            taken.add(group)
        ftaken = fields_taken.setdefault((entry, group), set())
        fld = unique_name(fld, ftaken)
        plans.append(ChannelPlan(
            stream=stream.name, entry=entry, group=group, field=fld, nx_class=nx_class,
            short_name="", role=role, dtype=stream.dtype or "float64",
            point_shape=tuple(stream.shape), units=units,
            display_name=chinfo.get("display_name") or stream.name.rpartition(":")[2], note=note,
            device_fields=static, bliss_group=bliss_group, traits=kind,
        ))
    _assign_short_names(plans)
    return plans, skipped


def _traits(stream: StreamDescription) -> KindTraits:
    """The stream's kind's traits: the mapping places streams by them alone."""
    if stream.traits is None:
        raise ValueError(f"stream {stream.name!r} has no kind: the description must go through "
                         f"kinds.classify before it is mapped")
    return stream.traits


def _assign_short_names(plans: list[ChannelPlan]) -> None:
    """Measurement names: the group for its primary field, else group_field; unique per entry."""
    taken: dict[str, set] = {}
    primaries: set[tuple[str, str]] = set()
    for p in plans:
        is_primary = p.field in PRIMARY_FIELDS and (p.entry, p.group) not in primaries
        if is_primary:
            primaries.add((p.entry, p.group))
        name = p.group if is_primary else f"{p.group}_{p.field}"
        p.short_name = unique_name(name, taken.setdefault(p.entry, set()))
