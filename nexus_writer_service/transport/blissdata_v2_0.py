"""Where blissdata 2.0.x (BLISS 2.2) keeps the names we use (``blissdata_api`` picks this module).

2.0.x has the layout of blissdata 1.x: exceptions, the event stream and the encoders under
``redis_engine``, the stream classes and cursors in ``streams.base``; no ``h5map`` (see
``nexus_writer_service.h5map``) and no ``BrokenPluginStream`` (a plugin class that fails
while it is made fails the scan's load: the writer never makes plugin classes).
"""

from blissdata.redis_engine.encoding.json import JsonStreamEncoder
from blissdata.redis_engine.encoding.numeric import NumericStreamEncoder
# (blissdata 2.0.x's names: the type checker sees the newer blissdata of the test environment)
from blissdata.redis_engine.event_stream import EventStream, StreamEntry  # type: ignore[attr-defined]
from blissdata.redis_engine.exceptions import (
    EndOfStream,
    IndexNoMoreThereError,
    NoScanAvailable,
    ScanLoadError,
    ScanNotFoundError,
)
from blissdata.streams.base import (
    BaseStream,
    Cursor,
    CursorGroup,
    EventRange,
    MissingPluginStream,
    Stream,
    StreamDefinition,
    View,
)

BrokenPluginStream = None

__all__ = [
    "BaseStream", "BrokenPluginStream", "Cursor", "CursorGroup", "EndOfStream", "EventRange", "EventStream",
    "IndexNoMoreThereError", "JsonStreamEncoder", "MissingPluginStream", "NoScanAvailable",
    "NumericStreamEncoder", "ScanLoadError", "ScanNotFoundError", "Stream", "StreamDefinition", "StreamEntry",
    "View",
]
