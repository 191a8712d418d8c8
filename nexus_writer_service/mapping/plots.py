"""The NXdata groups that make a file plot itself in silx, h5web, PyMca.

``plotselect`` is what a user expects first: counters against the scanned motor,
a mesh in its real 2D shape with its axes, a ct or loopscan against time or
index. Meshes and channels of unequal length (aborted scans) cannot be plain
links, so they are virtual datasets over the channel arrays: nothing is copied.

Every plot of spectra has an axis along the spectrum: ``channel`` (the index), and
``energy`` (keV) when the beamline configuration gives the detector's
``energy_calibration``; silx, PyMca and h5web then label the x axis instead of
plotting against a bare index.

An NXdata is made only over channels with data: a signal without a point is no plot
(h5web shows "Abscissas have undefined domain"), so a scan that published nothing has
no NXdata and no ``@default``. The default plot is one every reader opens: spectra a
reader could only decode with a filter plugin (the opt-in bitshuffle-LZ4 preset) are
not the default when the scan has 0D channels to plot instead.
"""

from __future__ import annotations

import numpy as np
from ..h5map import SpaceSelection, VirtualDataset, VirtualSource

from dataclasses import dataclass
from typing import Any, Collection, Mapping

from ..channelplan import ChannelPlan
from ..scangrid import mesh_shape
from .channels import mca_energy_calibration
from ..nxnodes import PRIMARY_FIELDS, Group, attr_value, field, group, link, unique_name


#: Up to this many points, 1D views map one source per point. HDF5 needs only one,
#: but nexusformat (a validator users run) reads a VDS's length as its number of
#: sources; beyond this the per-point mapping costs more than it is worth.
SPLIT_MAX = 1000


def _split(sources: list[tuple[list, list, list, list]], stride: int = 1) -> list:
    """One source per index of the first dimension (see SPLIT_MAX)."""
    if len(sources) != 1 or len(sources[0][1]) != 1 or sources[0][1][0] > SPLIT_MAX:
        return sources
    (vstart,), (count,), (sstart,), _ = sources[0]
    return [([vstart + i], [1], [sstart + i * stride], [1]) for i in range(count)]


def _vds(src: str, dtype: str, shape: list[int], sources: list[tuple[list, list, list, list]],
         **attrs) -> VirtualDataset:
    vsources = [
        VirtualSource(
            vspace=SpaceSelection(start=vstart, count=vcount),
            src_file=".", src_dataset=src,
            src_space=SpaceSelection(start=sstart, count=scount),
        )
        for vstart, vcount, sstart, scount in sources
    ]
    return VirtualDataset(dtype=np.dtype(dtype).str, shape=shape, virtual_sources=vsources,
                          attributes={k: v for k, v in attrs.items() if v is not None})


def _trimmed(ch: ChannelPlan, entry: str, n: int, length: int):
    """Link to the channel, or a VDS of its first ``n`` points when it is longer."""
    target = f"/{entry}/{ch.path}"
    if length == n or n == 0 or ch.ragged:
        return link(target)
    shape = [n] + [int(d) for d in ch.point_shape]
    zeros = [0] * len(ch.point_shape)
    sources = [([0] + zeros, shape, [0] + zeros, shape)]
    if not zeros:
        sources = _split(sources)
    return _vds(target, ch.dtype, shape, sources, **ch.attributes)


def _mesh_axes(info: dict, channels: list[ChannelPlan]) -> tuple[ChannelPlan, ChannelPlan] | None:
    by_id = {}
    for ch in channels:
        cinfo = (info.get("channels") or {}).get(ch.stream) or {}
        if ch.role == "axis" and "axis_id" in cinfo:
            by_id[cinfo["axis_id"]] = ch
    if 0 in by_id and 1 in by_id:
        return by_id[0], by_id[1]
    return None


def _reshaped(ch: ChannelPlan, entry: str, shape: tuple[int, int], length: int):
    """Mesh view of a flat channel: one VDS row per (partial) line of the mesh."""
    slow, fast = shape
    sources = []
    for row in range(slow):
        count = min(fast, length - row * fast)
        if count <= 0:
            break
        sources.append(([row, 0], [1, count], [row * fast], [count]))
    if not sources:
        return None
    return _vds(f"/{entry}/{ch.path}", ch.dtype, [slow, fast], sources, units=ch.units)


def _axis_from_mesh(ch: ChannelPlan, entry: str, n: int, stride: int, length: int):
    """Coordinates of one mesh axis: every ``stride``-th point, ``n`` of them."""
    if length < (n - 1) * stride + 1:
        return None
    sources = _split([([0], [n], [0], [n])], stride)
    if len(sources) == 1:  # too long to split: one strided source
        vs = VirtualSource(vspace=SpaceSelection(start=[0], count=[n]), src_file=".",
                           src_dataset=f"/{entry}/{ch.path}",
                           src_space=SpaceSelection(start=[0], stride=[stride], count=[n]))
        return VirtualDataset(dtype=np.dtype(ch.dtype).str, shape=[n], virtual_sources=[vs],
                              attributes={"units": attr_value(ch.units)} if ch.units else {})
    return _vds(f"/{entry}/{ch.path}", ch.dtype, [n], sources, units=ch.units)


def _x_axis(info: dict, channels: list[ChannelPlan]) -> ChannelPlan | None:
    by_stream = {c.stream: c for c in channels}
    for plot in info.get("plots") or []:
        if isinstance(plot, dict):
            for item in plot.get("items") or []:
                if isinstance(item, dict) and item.get("x") in by_stream:
                    return by_stream[item["x"]]
    for role in ("axis", "timer"):
        for c in channels:
            if c.role == role and c.ndim == 0:
                return c
    return None


def _with_data(channels: list[ChannelPlan], lengths: dict) -> list[ChannelPlan]:
    return [c for c in channels if lengths.get(c.stream, 0) > 0]


@dataclass(frozen=True)
class DefaultSignals:
    """What an entry plots first (``plotselect``), chosen by ``default_signals``: the one
    rule for the file's default plot and for the status page's live plot."""

    #: 0D counters plotted, the signal first (empty: no 0D plot)
    counters: list
    #: the curve's x axis (None: the point index, or a mesh plotted in its 2D shape)
    x: ChannelPlan | None
    #: a mesh's (fast, slow) axes when it is plotted in its real 2D shape
    mesh_axes: tuple | None
    #: 1D spectra with data (plotted in ``spectra``)
    spectra: list
    #: every reader decodes the spectra (no filter plugin needed)
    portable_spectra: bool


def default_signals(info: dict, channels: list[ChannelPlan], lengths: dict[str, int] | None = None,
                    needs_plugin: frozenset = frozenset()) -> DefaultSignals:
    """The default plot's signals and axis. ``lengths`` None: a running scan, every
    channel counts as having data (the status page plots it while it grows)."""
    def with_data(chs):
        return chs if lengths is None else _with_data(chs, lengths)

    counters = with_data([c for c in channels if c.role == "counter" and c.ndim == 0])
    spectra = with_data([c for c in channels if c.is_spectrum and c.ndim == 1])
    # a detector's own value (diode, counter) makes the plot; the sub-fields of a
    # detector (MCA statistics, lima ROIs) do not: then the spectra are the plot, unless
    # readers without the filter plugin could not open them
    primary = [c for c in counters if c.field in PRIMARY_FIELDS]
    portable_spectra = not any(c.stream in needs_plugin for c in spectra)
    if primary or (spectra and portable_spectra):
        counters = primary
    else:  # sub-fields only (MCA statistics, ROIs): what counts first (events, not real time)
        counters = sorted(counters, key=lambda c: c.units != "counts")
    mesh_axes = _mesh_axes(info, channels) if mesh_shape(info) else None
    x = None if mesh_axes else _x_axis(info, channels)
    return DefaultSignals(counters, x, mesh_axes, spectra, portable_spectra)


def plots(entry: str, info: dict, channels: list[ChannelPlan], lengths: dict[str, int],
          detectors: Mapping | None = None, needs_plugin: frozenset = frozenset()) -> tuple[dict, str | None]:
    """NXdata groups for one entry and the name of the default one (None: nothing to plot).

    ``detectors``: the beamline configuration's detectors (for MCA energy calibrations).
    ``needs_plugin``: streams whose dataset only a reader with a filter plugin decodes.
    """
    chosen = default_signals(info, channels, lengths, needs_plugin)
    counters, spectra, portable_spectra = chosen.counters, chosen.spectra, chosen.portable_spectra
    out: dict = {}
    mesh = mesh_shape(info)
    if counters:
        if chosen.mesh_axes and mesh:
            nxdata = _mesh_plot(entry, mesh, chosen.mesh_axes, counters, lengths)
        else:
            nxdata = _curve_plot(entry, chosen.x, counters, lengths, detectors)
        if nxdata is not None:
            out["plotselect"] = nxdata
    if spectra:
        n = min(lengths.get(c.stream, 0) for c in spectra)
        same = [c for c in spectra if c.point_shape == spectra[0].point_shape]
        # spectra in detector files are virtual datasets already: linked, never a view of a view
        children = {c.short_name: (link(f"/{entry}/{c.path}") if c.role == "spectrum_files"
                                   else _trimmed(c, entry, n, lengths.get(c.stream, 0))) for c in same}
        axes, axis_nodes = spectrum_axes(same, detectors, set(children))
        children.update(axis_nodes)
        out["spectra"] = group("NXdata", children, signal=same[0].short_name,
                               auxiliary_signals=[c.short_name for c in same[1:]] or None,
                               axes=["."] + axes, interpretation="spectrum",
                               **{f"{name}_indices": 1 for name in axis_nodes})
    default: str | None
    if "plotselect" in out:
        default = "plotselect"
    else:  # an entry opens on nothing rather than on data most readers cannot decode
        default = "spectra" if "spectra" in out and portable_spectra else None
    return out, default


def spectrum_axes(spectra: list[ChannelPlan], detectors: Mapping | None,
                  taken: Collection[str] = frozenset()) -> tuple[list[str], dict]:
    """The axis along the spectra (``[name]``) and the datasets to put in their NXdata.

    ``channel`` is always there; ``energy`` (keV, from the configured calibration
    E = a + b*ch [+ c*ch**2]) becomes the axis when every spectrum plotted together has
    the same calibration (one x axis is all an NXdata has per dimension). Names already
    ``taken`` in the NXdata (a signal called ``energy``) get a suffix.
    """
    names = set(taken)
    channel_name, energy_name = unique_name("channel", names), unique_name("energy", names)
    size = int(spectra[0].point_shape[-1]) if spectra[0].point_shape and spectra[0].point_shape[-1] > 0 else 0
    if size <= 0:  # ragged spectra: no common channel axis
        return ["."], {}
    index = np.arange(size)
    nodes = {channel_name: field(index.astype("int32"), long_name="MCA channel")}
    calibrations = {mca_energy_calibration(c, detectors) for c in spectra}
    if len(calibrations) == 1 and None not in calibrations:
        (calib,) = calibrations
        assert calib is not None  # (None is not in the set)
        energy = sum((coef * index.astype(float) ** i for i, coef in enumerate(calib)), np.zeros(size))
        nodes[energy_name] = field(np.asarray(energy, dtype="float64"), units="keV",
                                   calibration=list(calib))
        return [energy_name], nodes
    return [channel_name], nodes


def _curve_plot(entry: str, x: ChannelPlan | None, counters: list[ChannelPlan], lengths: dict,
                detectors: Mapping | None = None) -> Group | None:
    """Counters (or spectra) against ``x`` (None: the point index); None without data."""
    counters = _with_data(counters, lengths)
    if not counters:
        return None
    if x is not None and not lengths.get(x.stream, 0):
        x = None  # an axis without points: against the index
    members = counters + ([x] if x else [])
    n = min(lengths.get(c.stream, 0) for c in members)
    children = {c.short_name: _trimmed(c, entry, n, lengths.get(c.stream, 0)) for c in members}
    attrs: dict[str, Any] = dict(signal=counters[0].short_name,
                 auxiliary_signals=[c.short_name for c in counters[1:]] or None)
    along: list[str] = ["."] * (counters[0].ndim)
    if counters[0].ndim == 1:  # spectra: an axis along them
        same = [c for c in counters if c.point_shape == counters[0].point_shape]
        along, axis_nodes = spectrum_axes(same, detectors, set(children))
        for name, node in axis_nodes.items():
            children[name] = node
            attrs[f"{name}_indices"] = 1
        attrs["interpretation"] = "spectrum"
    if x is not None or counters[0].ndim == 1:
        # one axis along the scan; a spectrum's own dimension has its channel/energy axis
        attrs["axes"] = [x.short_name if x is not None else "."] + along
    return group("NXdata", children, **attrs)


def _resolver(channels: list[ChannelPlan]) -> dict[str, ChannelPlan]:
    """Names a scientist may use for a channel: BLISS channel or counter, NeXus names.

    Later names win: a measurement name (unique in the entry) beats a counter name.
    """
    out: dict[str, ChannelPlan] = {}
    for c in channels:
        if c.field in PRIMARY_FIELDS:
            out[c.group] = c
    for c in channels:
        out[c.stream.rpartition(":")[2]] = c
    for key in ("display_name", "stream", "short_name"):
        for c in channels:
            if getattr(c, key):
                out[getattr(c, key)] = c
    return out


def configured_plot(entry: str, info: dict, channels: list[ChannelPlan], lengths: dict[str, int],
                    plot, detectors: Mapping | None = None) -> tuple[Group | None, list[str]]:
    """A plot the beamline configured (signal, axes, auxiliary signals by name)."""
    by_name = _resolver(channels)
    names = [plot.signal, *plot.auxiliary_signals, *plot.axes]
    missing = [n for n in names if n not in by_name]
    if missing:
        return None, missing
    signals = [by_name[n] for n in (plot.signal, *plot.auxiliary_signals)]
    axes = [by_name[n] for n in plot.axes]
    if not _with_data(signals, lengths):
        return None, []  # every channel is there, without a point
    mesh = mesh_shape(info)
    mesh_axes = _mesh_axes(info, channels) if mesh else None
    # a mesh is plotted in its real shape whenever the axes asked for are its own
    if (mesh and mesh_axes and all(c.ndim == 0 for c in signals)
            and {c.stream for c in axes} <= {c.stream for c in mesh_axes}):
        nxdata = _mesh_plot(entry, mesh, mesh_axes, signals, lengths)
    else:
        nxdata = _curve_plot(entry, axes[0] if axes else None, signals, lengths, detectors)
    if nxdata is not None and plot.title:
        nxdata.children["title"] = field(plot.title)
    return nxdata, []


def _mesh_plot(entry: str, shape: tuple[int, int], axes: tuple[ChannelPlan, ChannelPlan],
               counters: list[ChannelPlan], lengths: dict) -> Group | None:
    fast_ax, slow_ax = axes
    slow, fast = shape
    children = {}
    for c in counters:
        node = _reshaped(c, entry, shape, lengths.get(c.stream, 0))
        if node is not None:
            children[c.short_name] = node
    if not children:
        return None
    signals = [c.short_name for c in counters if c.short_name in children]
    fx = _axis_from_mesh(fast_ax, entry, fast, 1, lengths.get(fast_ax.stream, 0))
    sy = _axis_from_mesh(slow_ax, entry, slow, fast, lengths.get(slow_ax.stream, 0))
    attrs = dict(signal=signals[0], auxiliary_signals=signals[1:] or None)
    if fx is not None and sy is not None:
        children[fast_ax.short_name] = fx
        children[slow_ax.short_name] = sy
        attrs["axes"] = [slow_ax.short_name, fast_ax.short_name]
    return group("NXdata", children, **attrs)

