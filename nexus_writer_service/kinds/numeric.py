"""Plain numeric streams: 0D counters, 1D spectra, 2D images, fixed or ragged.

Their events are the points themselves: the scan writer appends every batch to a
growing dataset as it arrives (``io.arrays``). Nothing is added at the end: the
dataset's length is what the completeness check compares with the stream's.
"""

from __future__ import annotations

from ..descriptions import StreamDescription
from . import register
from .base import StreamKind


@register
class Numeric(StreamKind):
    name = "numeric"
    priority = 0
    appends = True
    points_encoded = True

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.encoding == "numeric" and stream.plugin is None

    def announced_path(self) -> str | None:
        """Where BLISS says readers will look for this channel in the file (None: nowhere)."""
        return None
