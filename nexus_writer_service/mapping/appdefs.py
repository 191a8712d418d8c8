"""Application definitions (pure): a technique that names NXfluo, NXxas or NXscan gets, in
its NXsubentry, what that definition requires, from the channels the configuration names.

Nothing is copied: fields are links to the entry's own datasets (``@target`` as everywhere),
a few small values are written (wavelength from the monochromator energy, the MCA energy
axis from its calibration). Where a definition wants NX_INT and BLISS's channel is float
(simulated diodes), the field is a virtual dataset of int64 over the channel: HDF5 converts
when it is read (fractions dropped); the float data stay in ``instrument/``.

A subentry the writer cannot complete (no sample name, no source type ...) does not claim
the definition: ``definition`` is left out and the entry's writer note says what was missing.
"""

from __future__ import annotations

import numpy as np

from ..metadata.config import BeamlineConfig, TechniqueConfig
from ..metadata.config.units import _units_registry
from . import plots
from ..channelplan import ChannelPlan
from .channels import mca_energy_calibration
from ..nxnodes import Dataset, Group, SoftLink, field, group, link, nx_class

#: definitions whose content is filled in here
SUPPORTED = ("NXfluo", "NXxas", "NXscan")
#: h c in keV angstrom: wavelength = HC / energy
HC_KEV_ANGSTROM = 12.398419843320026


class Missing(Exception):
    """What a definition needs and this scan does not have (one sentence)."""


def _value(node):
    value = getattr(node, "value", node)
    return getattr(value, "root", value)


def _child(grp: object, cls: str) -> tuple[str, Group] | tuple[None, None]:
    for name, node in (grp.children.items() if isinstance(grp, Group) else ()):
        if isinstance(node, Group) and nx_class(node) == cls:
            return name, node
    return None, None


def _channel(by_name: dict[str, ChannelPlan], name: str | None, role: str) -> ChannelPlan:
    ch = by_name.get(name) if name else None
    if ch is None:
        raise Missing(f"{role} {name!r} is not a channel of this scan")
    return ch


def _data(ch: ChannelPlan, entry: str, lengths: dict[str, int], integer: bool = False):
    """A link to the channel's dataset, or an int64 view of it when NX_INT is wanted."""
    n = int(lengths.get(ch.stream, 0))
    if n == 0:
        raise Missing(f"{ch.short_name or ch.stream} has no data")
    if not integer or np.dtype(ch.dtype).kind in "iu":
        return link(f"/{entry}/{ch.path}")
    shape = [n] + [int(d) for d in ch.point_shape]
    zeros = [0] * len(ch.point_shape)
    sources = [([0] + zeros, shape, [0] + zeros, shape)]
    if not zeros:  # nexusformat reads a VDS's length as its number of sources (plots.SPLIT_MAX)
        sources = plots._split(sources)
    return plots._vds(f"/{entry}/{ch.path}", "int64", shape, sources, units=ch.units)


def _quantity(node, want: str) -> float | None:
    """A field's value in units ``want`` (None if it has no units pint converts)."""
    units = node.attributes.get("units") if isinstance(node, Dataset) else None
    if units is None:
        return None
    try:
        ureg = _units_registry()
        return float(ureg.Quantity(float(_value(node)), str(_value(units))).to(want).magnitude)
    except Exception:
        return None


def _is_a(units: str | None, like: str) -> bool:
    """Whether ``units`` measure the same quantity as ``like`` (an energy, an angle)."""
    try:
        ureg = _units_registry()
        return bool(units) and ureg.parse_units(units).dimensionality == ureg.parse_units(like).dimensionality
    except Exception:
        return False


def _source(root: Group, entry: str, probe: bool) -> SoftLink:
    name, src = _child(root.children.get("instrument"), "NXsource")
    if src is None:
        raise Missing("no NXsource in instrument (configure instrument.source: type, name, probe)")
    wanted = ("type", "name", "probe") if probe else ("type", "name")
    absent = [k for k in wanted if k not in src.children]
    if absent:
        raise Missing(f"instrument/{name} has no {', '.join(absent)}")
    if probe and str(_value(src.children["probe"])) != "x-ray":
        raise Missing(f"instrument/{name}/probe is {_value(src.children['probe'])!r}, NXfluo wants 'x-ray'")
    return link(f"/{entry}/instrument/{name}")


def _wavelength(root: Group) -> Dataset:
    name, mono = _child(root.children.get("instrument"), "NXmonochromator")
    if mono is None:
        raise Missing("no NXmonochromator in instrument (configure its energy or wavelength)")
    if "wavelength" in mono.children:
        value = _quantity(mono.children["wavelength"], "angstrom")
        if value is not None:
            return field(value, units="angstrom")
    energy = _quantity(mono.children["energy"], "keV") if "energy" in mono.children else None
    if not energy:
        raise Missing(f"instrument/{name} has no wavelength or energy with units")
    return field(HC_KEV_ANGSTROM / energy, units="angstrom")


def _sample(root: Group, entry: str, required: bool = True) -> dict:
    sample = root.children.get("sample")
    if isinstance(sample, Group) and "name" in sample.children:
        return {"name": link(f"/{entry}/sample/name")}
    if required:
        raise Missing("no sample name (configure sample.name, or set it in the scan's sample metadata)")
    return {}


def _mca_energy(ch: ChannelPlan, cfg: BeamlineConfig) -> Dataset:
    calib = mca_energy_calibration(ch, cfg.detectors)
    if calib is None:
        raise Missing(f"no energy_calibration for detector {ch.group} (detectors.<name>.energy_calibration)")
    channels = np.arange(int(ch.point_shape[-1]), dtype=float)
    energy = sum(c * channels ** i for i, c in enumerate(calib))
    return field(energy, units="keV")


def _monitor(by_name, tech: TechniqueConfig, info: dict, entry: str, lengths, integer: bool) -> Group:
    ch = _channel(by_name, tech.monitor, "monitor")
    children = {"mode": field("timer"), "data": _data(ch, entry, lengths, integer=integer)}
    if isinstance(info.get("count_time"), (int, float)):
        children["preset"] = field(float(info["count_time"]), units="s")
    return group("NXmonitor", children)


def _fluo(root, entry, name, tech, info, by_name, lengths, cfg) -> dict:
    det = _channel(by_name, tech.detector, "detector")
    if det.ndim != 1:
        raise Missing(f"detector {tech.detector!r} is not a spectrum")
    base = f"/{entry}/{name}"
    monitor = _monitor(by_name, tech, info, entry, lengths, integer=True)
    if "preset" not in monitor.children:
        raise Missing("no count_time in the scan (NXmonitor/preset)")
    return {
        "instrument": group("NXinstrument", {
            "source": _source(root, entry, probe=True),
            "monochromator": group("NXmonochromator", {"wavelength": _wavelength(root)}),
            "fluorescence": group("NXdetector", {"data": _data(det, entry, lengths, integer=True),
                                                 "energy": _mca_energy(det, cfg)}),
        }),
        "sample": group("NXsample", _sample(root, entry)),
        "monitor": monitor,
        "data": group("NXdata", {"data": _data(det, entry, lengths, integer=True),
                                 "energy": link(f"{base}/instrument/fluorescence/energy")},
                      signal="data", axes=[".", "energy"]),
    }


def _xas(root, entry, name, tech, info, by_name, lengths, cfg) -> dict:
    energy = _channel(by_name, tech.energy, "energy")
    if not _is_a(energy.units, "keV"):
        raise Missing(f"energy channel {tech.energy!r} has units {energy.units!r}, not an energy")
    det = _channel(by_name, tech.detector, "detector")
    out = {
        "element": group("NXelement", {"name": field(tech.element), "symbol": field(tech.element)}),
        "edge": group("NXabsorption_edge", {"name": field(tech.edge)}),
        "is_experimental": field(True),
        "energy": _data(energy, entry, lengths),
        "intensity": _data(det, entry, lengths),
        "sample": group("NXsample", _sample(root, entry)),
    }
    if tech.monitor:
        out["monitor"] = _monitor(by_name, tech, info, entry, lengths, integer=False)
    n = min(int(lengths.get(c.stream, 0)) for c in (energy, det))
    out["data"] = group("NXdata", {"intensity": plots._trimmed(det, entry, n, lengths.get(det.stream, 0)),
                                   "energy": plots._trimmed(energy, entry, n, lengths.get(energy.stream, 0))},
                        signal="intensity", axes=["energy"])
    return out


def _scan(root, entry, name, tech, info, by_name, lengths, cfg) -> dict:
    det = _channel(by_name, tech.detector, "detector")
    axis: ChannelPlan | None
    if tech.axis:
        axis = _channel(by_name, tech.axis, "axis")
    else:
        axis = next((c for c in by_name.values() if c.role == "axis"), None)
        if axis is None:
            raise Missing("no scanned motor in this scan (give the technique's axis)")
    if not (_is_a(axis.units, "deg") and axis.units not in ("", None)):
        raise Missing(f"NXscan's rotation_angle is an angle: axis {axis.display_name or axis.stream!r} "
                      f"has units {axis.units!r}")
    if not info.get("end_time"):
        raise Missing("no end_time (the scan did not end)")
    n = min(int(lengths.get(c.stream, 0)) for c in (det, axis))
    data = _data(det, entry, {det.stream: n}, integer=True)
    if np.dtype(det.dtype).kind in "iu" and n != lengths.get(det.stream, 0):
        data = plots._trimmed(det, entry, n, lengths.get(det.stream, 0))
    sample = _sample(root, entry, required=False)
    sample["rotation_angle"] = plots._trimmed(axis, entry, n, lengths.get(axis.stream, 0))
    return {
        "end_time": field(str(info["end_time"])),
        "instrument": group("NXinstrument", {"detector": group("NXdetector", {"data": data})}),
        "sample": group("NXsample", sample),
        "monitor": _monitor(by_name, tech, info, entry, lengths, integer=True),
        "data": group("NXdata", {"data": data, "rotation_angle": sample["rotation_angle"]},
                      signal="data", axes=["rotation_angle"] + ["."] * det.ndim),
    }


_BUILDERS = {"NXfluo": _fluo, "NXxas": _xas, "NXscan": _scan}


def complete(root: Group, entry: str, info: dict, channels: list[ChannelPlan], lengths: dict[str, int],
             cfg: BeamlineConfig, technique: str | None) -> list[str]:
    """Fill the technique's subentry (already in ``root``) for its application definition;
    returns warnings (what was missing, then the definition is not claimed)."""
    tech = cfg.techniques.get(technique) if technique else None
    sub = root.children.get(technique) if technique else None
    if tech is None or not isinstance(sub, Group) or tech.definition not in SUPPORTED:
        return []
    by_name = plots._resolver(channels)
    try:
        content = _BUILDERS[tech.definition](root, entry, technique, tech, info, by_name, lengths, cfg)
    except Missing as why:
        sub.children.pop("definition", None)
        return [f"technique {technique!r}: not written as {tech.definition}: {why}"]
    sub.children.setdefault("start_time", field(str(info.get("start_time") or "")))
    for key, node in content.items():
        sub.children.setdefault(key, node)
    return []


__all__ = ["complete", "SUPPORTED", "HC_KEV_ANGSTROM"]
