"""Streams no kind here takes: a plugin this writer does not know, or an encoding
blissdata may invent later.

The scan is written with everything else; this stream is named in the writer note
and the Redis state, and the scan ends INCOMPLETE: data was published that is not
in the file. One stream never fails a scan.
"""

from __future__ import annotations

from ..descriptions import StreamDescription
from . import register
from .base import Context, Outcome, StreamKind


@register
class Unsupported(StreamKind):
    name = "unsupported"
    priority = -1000
    follows = False
    has_channel = False

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return True

    def unsaved_reason(self) -> str:
        plugin = self.stream.plugin
        if plugin:
            return f"blissdata plugin {plugin!r}: stream kind not written by this writer version"
        return f"stream encoding {self.stream.encoding!r} not written by this writer version"

    def finish(self, ctx: Context) -> Outcome:
        return Outcome(accounted=False,
                       warnings=[f"stream {self.stream.name!r} published but not written ({self.unsaved_reason()})"])
