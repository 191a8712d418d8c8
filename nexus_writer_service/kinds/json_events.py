"""Plain JSON streams (``Stream.make_definition(name, "json")``): events a device
publishes as JSON documents, in order.

Written as one JSON string per event in the channel's place, so nothing published
is dropped; a reader decodes them with any JSON library.
"""

from __future__ import annotations

import json

from ..descriptions import StreamDescription
from ..nxnodes import field, link
from . import register
from .base import Context, Outcome, StreamKind


@register
class JsonEvents(StreamKind):
    name = "json"
    priority = 0
    role = "events"

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.encoding == "json" and stream.plugin is None

    def __init__(self, stream: StreamDescription):
        super().__init__(stream)
        self.events: list[str] = []
        self.lost = 0

    def on_events(self, events, lost: int = 0) -> None:
        # trimmed events keep their place (an empty document), later ones stay at their index
        self.lost += lost
        self.events.extend([""] * lost)
        self.events.extend(json.dumps(e, sort_keys=True, default=str) for e in events)

    def progress(self) -> int:
        return len(self.events)

    def finish(self, ctx: Context) -> Outcome:
        ch = ctx.channel
        path = f"instrument/{ch.group}/{ch.field}"
        nodes = {path: field(self.events or [""], interpretation="json", events=len(self.events))}
        nodes[f"measurement/{ch.short_name}"] = link(f"/{ctx.entry}/{path}")
        out = Outcome(nodes=nodes, written=len(self.events) - self.lost, missing=self.lost)
        if self.lost:
            out.warnings.append(f"{self.stream.name}: {self.lost} events trimmed from Redis before they were saved")
        return out
