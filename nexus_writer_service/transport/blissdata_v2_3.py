"""Where blissdata 2.3.x and 2.4.x (BLISS 2.3, 2.4) keep the names we use (``blissdata_api``
picks this module).

2.3 moved the exceptions to ``blissdata.exceptions``, the event stream and the encoders under
``streams``, the default stream class to ``streams.default`` (the old places warn, and go in 3.0).
"""

from blissdata.exceptions import (
    EndOfStream,
    IndexNoMoreThereError,
    NoScanAvailable,
    ScanLoadError,
    ScanNotFoundError,
)
from blissdata.streams import BaseStream, Cursor, CursorGroup, EventRange, StreamDefinition
from blissdata.streams.default import BrokenPluginStream, MissingPluginStream, Stream, View
from blissdata.streams.encoding.json import JsonStreamEncoder
from blissdata.streams.encoding.numeric import NumericStreamEncoder
from blissdata.streams.event_stream import EventStream, StreamEntry

__all__ = [
    "BaseStream", "BrokenPluginStream", "Cursor", "CursorGroup", "EndOfStream", "EventRange", "EventStream",
    "IndexNoMoreThereError", "JsonStreamEncoder", "MissingPluginStream", "NoScanAvailable",
    "NumericStreamEncoder", "ScanLoadError", "ScanNotFoundError", "Stream", "StreamDefinition", "StreamEntry",
    "View",
]
