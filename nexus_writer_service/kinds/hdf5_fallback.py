"""Numeric streams BLISS backs with the file: ``data_path`` names the place readers
(blissdata's ``Hdf5BackedStream``) look once Redis has trimmed the data.

Written like plain numeric streams, at exactly that place when it is a safe path
inside one of the scan's entries (``mapping.channels`` checks it), so a reader that
falls back to the file finds the points there. The plugin class itself is never
needed: it would read the trimmed points from the very file being written.
"""

from __future__ import annotations

from ..descriptions import StreamDescription
from . import register
from .numeric import Numeric


@register
class Hdf5Fallback(Numeric):
    name = "hdf5_fallback"
    priority = 10

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        return stream.encoding == "numeric" and (
            stream.plugin == "hdf5_fallback" or (stream.plugin is None and bool(stream.info.get("data_path"))))

    def announced_path(self) -> str | None:
        path = self.stream.info.get("data_path")
        return str(path) if path else None
