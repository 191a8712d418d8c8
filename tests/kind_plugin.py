"""A stream kind from another package, installed for one test through the entry point
group ``nexus_writer_service.kinds`` (a real distribution: a ``.dist-info`` with its
``entry_points.txt`` on ``sys.path``), exactly as doc/design.md's walkthrough adds one.

The toy kind takes JSON streams of plugin ``toy_counter`` whose events are lists of
numbers, and writes them as one float dataset at its channel's place, linked from
``measurement``. Nothing in mapping/ or writer/ knows it: they see its traits.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import textwrap

from nexus_writer_service import kinds

PLUGIN = "toy_counter"
MODULE = "nxw_toy_kind"

SOURCE = textwrap.dedent('''
    """A toy stream kind, published by its own package."""

    from nexus_writer_service.kinds import Context, Outcome, StreamKind
    from nexus_writer_service.nxnodes import field, group, link


    class ToyCounter(StreamKind):
        name = "toy_counter"
        priority = 50            # before the plain JSON kind, which would take the stream too
        appends = False          # its events are lists of values, not one point each
        role = None              # placed by BLISS's naming, like a counter

        @classmethod
        def accepts(cls, stream):
            return stream.encoding == "json" and stream.plugin == "toy_counter"

        def __init__(self, stream):
            super().__init__(stream)
            self.values = []
            self.lost = 0

        def on_events(self, events, lost=0):
            self.lost += lost
            for event in events:
                self.values.extend(float(v) for v in event)

        def progress(self):
            return len(self.values)

        def finish(self, ctx: Context) -> Outcome:
            ch = ctx.channel
            nodes = {f"instrument/{ch.group}": group(ch.nx_class, {ch.field: field(self.values, units="counts")}),
                     f"measurement/{ch.short_name}": link(f"/{ctx.entry}/{ch.path}")}
            return Outcome(nodes=nodes, written=len(self.values), missing=self.lost)
''')

ENTRY_POINTS = f"[nexus_writer_service.kinds]\ntoy = {MODULE}:ToyCounter\n"
METADATA = "Metadata-Version: 2.1\nName: nxw-toy-kind\nVersion: 0.1\n"


@contextlib.contextmanager
def installed_toy_kind(folder):
    """The toy package installed in ``folder`` (put first on ``sys.path``) for the block;
    the kinds' registry is as it was after it, for the other tests."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODULE}.py").write_text(SOURCE)
    info = folder / "nxw_toy_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    saved = (list(kinds._KINDS), kinds._external_loaded)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    kinds._external_loaded = False  # the entry points are read again, with the toy's
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()
        kinds._KINDS[:] = saved[0]
        kinds._external_loaded = saved[1]
