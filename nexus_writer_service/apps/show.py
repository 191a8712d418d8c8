"""``nexus-writer show FILE [PATH]``: what a NeXus viewer would show, as text.

A fresh machine (or a ``.venv`` without a Qt binding) cannot run ``silx view``;
this prints the tree with NX classes, shapes, dtypes, units and link targets,
the filter plugins the file says a reader needs, and the default plot chain
(``/@default`` -> entry ``@default`` -> NXdata ``@signal``/``@axes``) as silx
resolves it, so one sees at once whether a viewer would plot the file.

Only metadata is read (shapes, attributes, small strings), never compressed
data, so the command works on files whose filters are not installed.

``--png OUT`` draws the default plot (or PATH) the way ``silx view`` does, with silx's
own data viewer, offscreen when there is no display: it needs a Qt binding (the
``[viewer]`` extra installs one).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

import h5py
import numpy as np
from silx.io.nxdata import get_default

from ..io import retry

#: scalar and short string values shown inline; data arrays never are
_MAX_INLINE = 60


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return "[" + ", ".join(_text(v) for v in value.tolist()) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _attr(obj, name: str) -> str | None:
    try:
        value = obj.attrs.get(name)
    except (OSError, KeyError):
        return None
    return None if value is None else _text(value)


def _inline(dset: h5py.Dataset) -> str:
    """A scalar string or number, read only when it is small and not filtered."""
    if dset.shape != () or dset.is_virtual:
        return ""
    try:
        value = _text(dset[()])
    except OSError:  # a filter this process lacks
        return " = <unreadable: filter missing>"
    if len(value) > _MAX_INLINE:
        value = value[:_MAX_INLINE - 3] + "..."
    return f" = {value!r}"


def _dataset_line(dset: h5py.Dataset) -> str:
    shape = "x".join(str(n) for n in dset.shape) or "scalar"
    parts = [f"{shape} {dset.dtype}"]
    for key in ("units", "interpretation", "long_name"):
        value = _attr(dset, key)
        if value:
            parts.append(f"@{key}={value}")
    if dset.is_virtual:
        parts.append("virtual")
    plist = dset.id.get_create_plist()
    if plist.get_nfilters():
        filters = [plist.get_filter(i)[3].decode(errors="replace") or str(plist.get_filter(i)[0])
                   for i in range(plist.get_nfilters())]
        parts.append("filters=" + "+".join(filters))
    return "  ".join(parts) + _inline(dset)


def tree_lines(group: h5py.Group, depth: int | None = None, _indent: str = "") -> Iterator[str]:
    """One line per item below ``group``: name, NX class or shape/dtype/units, link target."""
    for name in group:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):
            yield f"{_indent}{name} -> {link.path}"
            continue
        if isinstance(link, h5py.ExternalLink):
            yield f"{_indent}{name} -> {link.filename}::{link.path}"
            continue
        obj = group[name]
        if isinstance(obj, h5py.Dataset):
            yield f"{_indent}{name}  {_dataset_line(obj)}"
        else:
            nx = _attr(obj, "NX_class") or "(no NX_class)"
            extra = "".join(f"  @{k}={_attr(obj, k)}" for k in ("default", "signal", "axes", "interpretation")
                            if _attr(obj, k) is not None)
            yield f"{_indent}{name}/  {nx}{extra}"
            if depth is None or depth > 1:
                yield from tree_lines(obj, None if depth is None else depth - 1, _indent + "  ")


def default_plot(f: h5py.File) -> list[str]:
    """The default plot chain as silx follows it, and what it would plot."""
    lines = []
    root_default = _attr(f, "default")
    lines.append(f"/@default = {root_default!r}" if root_default else "/@default: not set")
    entry = f.get(root_default) if root_default else None
    if isinstance(entry, h5py.Group):
        lines.append(f"/{root_default}@default = {_attr(entry, 'default')!r}")
    nxdata = get_default(f, validate=True)
    if nxdata is None:
        lines.append("default plot: none (a viewer opens the file without a plot)")
        return lines
    axes = [a for a in nxdata.axes_names if a] if nxdata.axes_names else []
    lines.append(f"default plot: {nxdata.group.name} signal={nxdata.signal_name!r} "
                 f"shape={nxdata.signal.shape} interpretation={nxdata.interpretation or '-'} axes={axes}")
    return lines


@retry.retried
def show(path: str, inner: str = "/", depth: int | None = None) -> str:
    """The text ``nexus-writer show`` prints (a file being written is read again when
    it is caught half-flushed: ``io.retry``)."""
    with h5py.File(path, "r", locking=False) as f:
        lines = [f"{path}"]
        plugins = _attr(f, "required_filter_plugins")
        lines.append(f"required_filter_plugins: {plugins}" if plugins else
                     "required_filter_plugins: not stated (not written by nexus_writer_service?)")
        lines.extend(default_plot(f))
        lines.append("")
        node = f[inner]
        if isinstance(node, h5py.Dataset):
            lines.append(f"{node.name}  {_dataset_line(node)}")
        else:
            lines.append(f"{node.name}  {_attr(node, 'NX_class') or ''}")
            lines.extend(tree_lines(node, depth, "  "))
        return "\n".join(lines)


@retry.retried
def render(path: str, out_png: str, inner: str | None = None, size: tuple[int, int] = (800, 600)) -> dict:
    """Draw ``inner`` (default: the file's default plot) with silx's data viewer into
    ``out_png``; returns what was drawn: the view's name and, per curve or image, its data.

    Uses the same widget ``silx view`` shows on the right of its tree, so a file that
    draws here draws there. Without a display, Qt's ``offscreen`` platform is used.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from silx.gui import qt  # ImportError without a Qt binding: pip install 'nexus_writer_service[viewer]'
    from silx.gui.data.DataViewerFrame import DataViewerFrame
    from silx.gui.plot import PlotWidget

    app = qt.QApplication.instance() or qt.QApplication([])
    with h5py.File(path, "r", locking=False) as f:
        if inner:
            node = f[inner]
        else:
            nxdata = get_default(f, validate=True)
            if nxdata is None:
                raise KeyError("the file has no default plot (give a PATH)")
            node = nxdata.group
        viewer = DataViewerFrame()
        viewer.resize(*size)
        viewer.setData(node)
        viewer.show()
        for _ in range(20):  # let the plot lay itself out and draw
            app.processEvents()
            qt.QThread.msleep(10)
        drawn: dict = {"view": type(viewer.displayedView()).__name__, "curves": {}, "images": {}}
        for plot in viewer.findChildren(PlotWidget):
            if not plot.isVisible():
                continue
            for curve in plot.getAllCurves():
                drawn["curves"][curve.getName()] = (curve.getXData(copy=True).tolist(),
                                                    curve.getYData(copy=True).tolist())
            for image in plot.getAllImages():
                drawn["images"][image.getName()] = list(image.getData(copy=False).shape)
            drawn["xlabel"] = plot.getXAxis().getLabel()
        viewer.grab().save(out_png, "PNG")
        viewer.close()
        viewer.deleteLater()
        app.processEvents()
    return drawn


def add_parser(sub) -> None:
    sh = sub.add_parser("show", help="print a NeXus file's tree, NX classes and default plot")
    sh.add_argument("file", help="HDF5 file")
    sh.add_argument("path", nargs="?", default="/", help="group or dataset inside the file (default: /)")
    sh.add_argument("-d", "--depth", type=int, default=None, help="levels of groups to descend")
    sh.add_argument("--png", metavar="OUT", help="also draw the default plot (or PATH) as silx view "
                                                 "does, into this PNG (needs the [viewer] extra)")


def run(args: argparse.Namespace) -> int:
    try:
        print(show(args.file, args.path, args.depth))
        if args.png:
            drawn = render(args.file, args.png, None if args.path == "/" else args.path)
            what = ", ".join(list(drawn["curves"]) + list(drawn["images"])) or "nothing"
            print(f"drawn by silx ({drawn['view']}): {what} -> {args.png}")
    except ImportError as e:
        print(f"nexus-writer show --png: {e} (pip install 'nexus_writer_service[viewer]')", file=sys.stderr)
        return 2
    except (OSError, KeyError, RuntimeError) as e:
        print(f"nexus-writer show: {args.file}: {e}", file=sys.stderr)
        return 2
    return 0
