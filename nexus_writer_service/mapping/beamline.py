"""The beamline configuration's part of an entry (pure): instrument and sample defaults,
the technique a scan belongs to, and its plots.

Precedence: what the scan itself says (scan_info) wins over the configuration, which
only fills what the scan leaves out.
"""

from __future__ import annotations

from .. import compression
from ..metadata.config import BeamlineConfig, TechniqueConfig
from ..metadata.config.tree import to_nxdict
from . import plots
from ..channelplan import ChannelPlan
from .metadata import is_empty, nxdict_to_group
from ..nxnodes import Group, conform, field, group


def instrument(cfg: BeamlineConfig) -> Group | None:
    if not cfg.instrument:
        return None
    grp = nxdict_to_group(to_nxdict(cfg.instrument, "NXinstrument"), "NXinstrument")
    if is_empty(grp):  # e.g. only a group given as {NX_class: NXcrystal}: nothing to write
        return None
    conform("NXinstrument", grp.children)
    return grp


def sample(cfg: BeamlineConfig) -> Group | None:
    if not cfg.sample:
        return None
    grp = nxdict_to_group(to_nxdict(cfg.sample, "NXsample"), "NXsample")
    return None if is_empty(grp) else grp


def channel_compression(channel: ChannelPlan, cfg: BeamlineConfig, scan_choice: str | None,
                        default: str) -> str:
    """The filter of one channel's dataset, the most specific choice winning: the detector's
    (configuration ``detectors.<name>.compression``), the scan's (BLISS ``writer_options``
    compression_scheme, translated), the beamline's (``compression``), the writer's
    (``--compression``). Our preset name (``compression``), "" for no filter."""
    ctrl = channel.stream.rpartition(":")[0].partition(":")[0]
    keys = (channel.stream, channel.display_name, channel.bliss_group, channel.group, ctrl)
    for key in keys:
        det = cfg.detectors.get(key) if key else None
        if det is not None and det.compression:
            return compression.canonical(det.compression)
    for det in cfg.detectors.values():  # by the NeXus name it gave (fluo -> fluo_det0)
        if det.compression and det.name and (channel.group == det.name
                                             or channel.group.startswith(det.name + "_")):
            return compression.canonical(det.compression)
    for choice in (scan_choice, cfg.compression):
        if choice is not None:
            return compression.canonical(choice)
    return compression.canonical(default)


def technique(info: dict, cfg: BeamlineConfig) -> tuple[str | None, TechniqueConfig | None, str | None]:
    """(name, technique, warning): the scan's choice, else the configured default."""
    chosen = (info.get("nexuswriter") or {}).get("technique") or cfg.technique
    if not chosen:
        return None, None, None
    if chosen not in cfg.techniques:
        return None, None, f"technique {chosen!r} is not configured (known: {', '.join(cfg.techniques) or 'none'})"
    return chosen, cfg.techniques[chosen], None


def entry_plots(entry: str, info: dict, channels: list[ChannelPlan], lengths: dict[str, int],
                cfg: BeamlineConfig) -> tuple[dict[str, Group], str | None, list[str]]:
    """Configured NXdata groups, the default one when a technique asks, and warnings.

    Without a technique every configured plot whose channels this entry has is made
    (a plot of MCA channels in a diode scan is simply not there); a technique's own
    plots that cannot be made are warned about.
    """
    name, tech, warning = technique(info, cfg)
    warnings = [warning] if warning else []
    wanted = tech.plots if tech else list(cfg.plots)
    out: dict[str, Group] = {}
    for plot_name in wanted:
        nxdata, missing = plots.configured_plot(entry, info, channels, lengths, cfg.plots[plot_name],
                                                  cfg.detectors)
        if nxdata is not None:
            out[plot_name] = nxdata
        elif tech and missing:
            warnings.append(f"plot {plot_name!r} of technique {name!r} not made: "
                            f"no channel {', '.join(map(repr, missing))} in this scan")
        elif tech:
            warnings.append(f"plot {plot_name!r} of technique {name!r} not made: its channels have no data")
    default = next((p for p in (tech.plots if tech else []) if p in out), None)
    if tech and name:
        children = {"title": field(name)}
        if tech.definition:
            children["definition"] = field(tech.definition)
        if tech.description:
            children["description"] = field(tech.description)
        # its plots by name, not as links: nexusformat (a validator users run) cannot read
        # a virtual dataset (mesh, trimmed plots) through a link to its group
        made = [p for p in tech.plots if p in out]
        if made:
            children["plots"] = field(made)
        out[name] = group("NXsubentry", children)
    return out, default, warnings
