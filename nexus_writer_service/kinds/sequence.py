"""Scan sequences: the parent's stream announces each child scan (its Redis key).

The children are scans of their own, written by their own scan writers; the parent
links their entries (the scan writer asks ``child_scans`` and resolves where each went).
"""

from __future__ import annotations

from ..descriptions import StreamDescription
from . import register
from .base import Context, Outcome, StreamKind


@register
class ScanSequence(StreamKind):
    name = "scan_sequence"
    priority = 20
    has_channel = False
    child_scans_announced = True

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.encoding == "json" and stream.plugin == "scan_sequence"

    def __init__(self, stream: StreamDescription):
        super().__init__(stream)
        #: (child scan key, scan number) in announcement order
        self.children: list[tuple[str, int]] = []
        self.lost = 0

    def on_events(self, events, lost: int = 0) -> None:
        self.lost += lost  # children announced, then trimmed from Redis before we read them
        for event in events:
            if isinstance(event, dict) and event.get("key"):
                try:
                    number = int(event.get("scan_number", 0))
                except (TypeError, ValueError):
                    number = 0
                self.children.append((str(event["key"]), number))

    def child_scans(self) -> list[tuple[str, int]]:
        return list(self.children)

    def finish(self, ctx: Context) -> Outcome:
        # children are scans of their own, not points of this one: nothing counted as written
        if not self.lost:
            return Outcome()
        return Outcome(missing=self.lost, warnings=[
            f"{self.stream.name}: {self.lost} child scans announced but trimmed from Redis before "
            f"they were read: not linked"])
