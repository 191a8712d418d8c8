"""scan_info + stream descriptions -> the NeXus tree of each entry (pure functions).

Two trees per entry, matching the two moments a writer can know things:
``start_tree`` when the scan is PREPARED (streams exist, data not yet), and
``final_tree`` once it is over (end time, end reason, final lengths, user
metadata with END timing, what each stream kind adds). The layout is documented
in doc/layout.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from datetime import datetime, timezone

from .. import __version__
from ..metadata.config import BeamlineConfig
from . import appdefs, beamline, metadata, plots
from ..channelplan import ChannelPlan
from .channels import entry_names, plan_channels
from ..descriptions import ScanDescription
from ..nxnodes import Dataset, Group, field, get, group, insert, link, merge, nx_class, stream_field

from ..records import NOTE, NOTE_GROUP
from ..states import FAILED, RUNNING


@dataclass
class EntryPlan:
    name: str
    master: str
    channels: list[ChannelPlan] = dc_field(default_factory=list)


@dataclass
class ScanPlan:
    entries: list[EntryPlan]
    #: streams of child-scan references (scan sequences)
    subscan_streams: list[str]
    #: stream name -> why it is not written
    skipped: dict[str, str]
    warnings: list[str]

    def channel(self, stream: str) -> ChannelPlan:
        for e in self.entries:
            for c in e.channels:
                if c.stream == stream:
                    return c
        raise KeyError(stream)

    @property
    def channels(self) -> list[ChannelPlan]:
        return [c for e in self.entries for c in e.channels]

    @property
    def streamed(self) -> list[ChannelPlan]:
        """Channels whose points come through Redis, appended as they arrive."""
        return [c for c in self.channels if c.appends]

    @property
    def referenced(self) -> list[ChannelPlan]:
        """Channels whose kind adds its own nodes (detector files, JSON documents)."""
        return [c for c in self.channels if not c.appends]


def plan_scan(desc: ScanDescription, config: BeamlineConfig | None = None) -> ScanPlan:
    channels, skipped = plan_channels(desc, config.detectors if config else None)
    entries = [EntryPlan(name, master) for name, master in entry_names(desc)]
    by_name = {e.name: e for e in entries}
    for ch in channels:
        by_name[ch.entry].channels.append(ch)
    warnings = [f"{c.stream}: {c.note}" for c in channels if c.note]
    warnings += [f"stream {name!r} not written: {why}" for name, why in skipped.items()]
    subscans = [s.name for s in desc.streams if s.traits is not None and s.traits.child_scans]
    if len(entries) > 1:
        entries = [e for e in entries if e.channels] or entries[:1]
    return ScanPlan(entries, subscans, skipped, warnings)


def _title(info: dict, desc: ScanDescription) -> str:
    return str(info.get("title") or desc.name or "")


def start_tree(desc: ScanDescription, entry: EntryPlan) -> Group:
    """The entry as soon as the scan is prepared: every channel dataset, empty."""
    info = desc.info
    instrument, measurement = group("NXinstrument"), group("NXcollection")
    root = group("NXentry", {
        "title": field(_title(info, desc)),
        "start_time": field(str(info.get("start_time") or _now())),
        # ESRF's writer makes it with the entry: count_time is known from the start
        **metadata.scan_parameters(info),
        "instrument": instrument,
        "measurement": measurement,
        NOTE_GROUP: group("NXnote", {
            **_note_identity(),
            NOTE.status: field(RUNNING),  # readers' word for WRITING (states.in_file)
            # which Redis scan this entry is: a restarted writer resumes only its own entries
            NOTE.scan_key: field(desc.key),
        }),
    })
    for ch in entry.channels:
        if not ch.appends:  # its kind adds its nodes (live and final)
            if ch.traits.live_group:  # its views grow in the group while the detector saves
                instrument.children.setdefault(ch.group, group(ch.nx_class))
            continue
        grp = instrument.children.get(ch.group)
        if not isinstance(grp, Group):  # (only channels' groups are in it)
            grp = group(ch.nx_class)
            instrument.children[ch.group] = grp
        grp.children[ch.field] = stream_field(ch.stream, **ch.attributes)
        for name, value in ch.device_fields.items():
            grp.children.setdefault(name, field(value))
        measurement.children[ch.short_name] = link(f"/{entry.name}/{ch.path}")
        if ch.bliss_group:
            # where BLISS's data_path points (readers falling back to the file look there):
            # a plain group holding a link to the field, not a link to the renamed group,
            # which nexusformat cannot follow inside a linked entry (sequences' subscans)
            alias = instrument.children.setdefault(ch.bliss_group, group("NXcollection"))
            if isinstance(alias, Group):
                alias.children.setdefault(ch.field, link(f"/{entry.name}/{ch.path}"))
    # ESRF tools read instrument/<detector>/data: link the primary field there
    for gname, item in instrument.children.items():
        if isinstance(item, Group) and nx_class(item) != "NXcollection" and "data" not in item.children:
            for primary in ("signal", "spectrum", "image"):
                if primary in item.children:
                    item.children["data"] = link(f"/{entry.name}/instrument/{gname}/{primary}")
                    break
    return root


def maybe_empty(entry: EntryPlan) -> list[str]:
    """The groups of ``start_tree`` that can still be empty when the scan is over, deepest
    first: the groups of kinds that fill them themselves (a detector that saved nothing),
    then ``measurement`` and ``instrument`` (a scan without channels). Everything else is
    made with its content."""
    live = sorted({f"instrument/{ch.group}" for ch in entry.channels
                   if not ch.appends and ch.traits.live_group})
    return [*live, "measurement", "instrument"]


def final_tree(desc: ScanDescription, entry: EntryPlan, final_info: dict, lengths: dict[str, int],
               status: str, warnings: list[str], config: BeamlineConfig | None = None,
               outcomes: dict | None = None, needs_plugin: frozenset = frozenset()) -> Group:
    """What is added when the scan is over (or given up): metadata, plots, status.

    ``outcomes``: stream -> ``kinds.Outcome`` of the kinds that add their own nodes.
    ``warnings`` is extended with what the configuration asked for but could not be made.
    ``needs_plugin``: streams written with a filter only plugin readers decode (never the
    default plot when another one can be). The entry's ``@default`` names an NXdata whose
    signal has data, or is not set (nothing to plot).
    """
    info = final_info
    config = config or BeamlineConfig()
    root = group("NXentry")
    if info.get("end_time"):
        root.children["end_time"] = field(str(info["end_time"]))
    if info.get("end_reason"):
        root.children["end_reason"] = field(str(info["end_reason"]))
    instrument = group("NXinstrument", metadata.instrument_name(info))
    # the scanned motors, and the timer when it is the top master (ESRF: in positioners too)
    scanned = {c.display_name: f"/{entry.name}/{c.path}" for c in entry.channels
               if c.role == "axis" or (c.role == "timer" and c.nx_class == "NXpositioner")}
    instrument.children.update(metadata.positioners(info, scanned, config.positioners))
    # the scan's own metadata first: in a merge, what is already there wins
    # problems with the scan's metadata (keys HDF5 cannot take as they are): said once
    meta_warnings: list[str] = []
    for defaults in (metadata.user_instrument(info, meta_warnings), beamline.instrument(config)):
        if defaults is not None:
            merge(instrument, defaults)
    # what BLISS says about each detector (lima's acq_parameters...): beside its data,
    # which win (the kinds' nodes below replace a metadata key of the same name)
    for name, grp in metadata.device_metadata(info, entry.channels, meta_warnings).items():
        known = instrument.children.get(name)
        if isinstance(known, Group):
            merge(known, grp)
        else:
            instrument.children.setdefault(name, grp)
    root.children["instrument"] = instrument
    for name, grp in metadata.user_categories(info, meta_warnings).items():
        root.children.setdefault(name, grp)
    # ESRF data policy: the dataset's ICAT Sample* fields (after the scan's own sample
    # metadata, before the beamline's defaults) and its other ICAT fields
    icat_sample, icat_other = metadata.dataset_metadata(info)
    if icat_sample is not None:
        if "sample" in root.children:
            merge(_group(root, "sample"), icat_sample)
        else:
            root.children["sample"] = icat_sample
    extras = {"dataset_metadata": icat_other, "user_scan_info": metadata.user_scan_info(info, meta_warnings)}
    for name, extra_group in extras.items():
        if extra_group is not None:
            root.children.setdefault(name, extra_group)
    sample_defaults = beamline.sample(config)
    if sample_defaults is not None:
        if "sample" in root.children:
            merge(_group(root, "sample"), sample_defaults)
        else:
            root.children["sample"] = sample_defaults
    root.children.update(metadata.notes(info))
    image_plot = None
    for ch in entry.channels:
        outcome = (outcomes or {}).get(ch.stream)
        if outcome is None:
            continue
        for path, node in outcome.nodes.items():
            try:
                before = get(root, path)
            except (KeyError, AttributeError):
                before = None
            if isinstance(before, Group) and isinstance(node, Group):
                merge(node, before)  # the kind's items win; the device's metadata stays beside
            insert(root, path, node)
        if outcome.plot is not None and image_plot is None and outcome.written > 0:
            image_plot = outcome.plot
    if image_plot is not None and "images" not in root.children:
        name, signal = image_plot
        root.children["images"] = group("NXdata", {name: signal}, signal=name, interpretation="image")
    nxdata, default = plots.plots(entry.name, info, entry.channels, lengths, config.detectors, needs_plugin)
    extra, technique_default, config_warnings = beamline.entry_plots(entry.name, info, entry.channels,
                                                                     lengths, config)
    warnings.extend(w for w in config_warnings + meta_warnings if w not in warnings)
    for name, grp in {**nxdata, **extra}.items():
        root.children.setdefault(name, grp)
    # the technique's application definition (NXfluo, NXxas, NXscan), from what is in the entry now
    technique_name = beamline.technique(info, config)[0]
    warnings.extend(w for w in appdefs.complete(root, entry.name, info, entry.channels, lengths, config,
                                                technique_name) if w not in warnings)
    default = technique_default or default
    if default is None and "images" in root.children:
        default = "images"
    if default:
        # (a plain str: callers read it back as the NXdata's name; io writes it as h5map's items)
        root.attributes["default"] = default  # type: ignore[assignment]
    root.children[NOTE_GROUP] = writer_note(entry, lengths, status, warnings)
    return root


def _group(parent: Group, name: str) -> Group:
    """A child that is a group by construction (the metadata's ``sample`` is made one)."""
    child = parent.children[name]
    if not isinstance(child, Group):
        raise TypeError(f"{name} is a {type(child).__name__}, not a group")
    return child


def failed_tree(info: dict, error: str | None) -> Group:
    """What remains of an entry whose file broke under it (its data stay in Redis)."""
    note = {**_note_identity(), NOTE.status: field(FAILED), NOTE.date: field(_now())}
    if error:
        note[NOTE.error] = field(error)
    children: dict[str, Group | Dataset] = {NOTE_GROUP: group("NXnote", note)}
    if info.get("title"):
        children["title"] = field(str(info["title"]))
    if info.get("start_time"):
        children["start_time"] = field(str(info["start_time"]))
    # readers of BLISS files wait for end_time: a failed entry is over too (written last)
    children["end_time"] = field(str(info.get("end_time") or _now()))
    return group("NXentry", children)


def writer_note(entry: EntryPlan, lengths: dict[str, int], status: str, warnings: list[str]) -> Group:
    points = group("NXcollection", {
        c.short_name: field(int(lengths.get(c.stream, 0)), stream=c.stream)
        for c in entry.channels if c.stream in lengths
    })
    note = group("NXnote", {NOTE.status: field(status), NOTE.date: field(_now())})
    if points.children:  # a scan without channels has no points to count (no empty group)
        note.children[NOTE.points] = points
    if warnings:
        note.children[NOTE.warnings] = field(list(warnings))
    return note


def _note_identity() -> dict:
    return {NOTE.writer: field("nexus_writer_service"), NOTE.writer_version: field(__version__),
            NOTE.type: field("text/plain")}


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat()


__all__ = ["plan_scan", "start_tree", "final_tree", "maybe_empty", "ScanPlan", "EntryPlan"]
