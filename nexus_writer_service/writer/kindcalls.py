"""What the scan writer asks of the stream kinds (``kinds``) beyond their events: their
context, the detector files they need read (``io.inspect``), their final outcomes."""

from __future__ import annotations

import logging
import os

from .. import kinds
from ..io import inspect
from ..mapping.layout import ScanPlan


def context(plan: ScanPlan, scan_file: str, ch, info: dict, files: dict | None = None) -> kinds.Context:
    return kinds.Context(entry=ch.entry if ch else plan.entries[0].name, channel=ch,
                         file_dir=os.path.dirname(scan_file), info=info, files=files or {})


def answers(needed) -> dict:
    """Read the detector files a kind asks for, until it asks nothing new."""
    known: dict = {}
    while True:
        queries = [q for q in needed(known) if q not in known]
        if not queries:
            return known
        known.update(inspect.answer(queries))


def outcomes(plan: ScanPlan, handlers: dict[str, kinds.StreamKind], scan_file: str, info: dict,
             log: logging.LoggerAdapter) -> dict[str, kinds.Outcome]:
    """What each kind that is not plain appended data adds, by stream."""
    out = {}
    channels = {c.stream: c for c in plan.referenced}
    for name, kind in handlers.items():
        if kind.appends or (kind.has_channel and name not in channels):
            continue
        known = answers(kind.files_needed)
        try:
            out[name] = kind.finish(context(plan, scan_file, channels.get(name), info, known))
        except Exception as exc:  # one stream never fails the scan
            log.debug("kind %s failed on %s", kind.name, name, exc_info=True)
            out[name] = kinds.Outcome(accounted=False, warnings=[
                f"{name}: not written ({kind.name} stream: {type(exc).__name__}: {exc})"])
    return out
