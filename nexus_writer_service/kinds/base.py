"""The interface every stream kind implements (one module per kind, see ``kinds/``).

A kind is chosen from the stream's description alone (``stream.info``, the encoding,
the plugin it names), never from the blissdata plugin class: a plugin that is missing
or cannot reach its detector server here is normal, and the writer reads the raw events.

A kind stays a pure piece of mapping: it sees descriptions and raw events, and answers
with plan nodes (``blissdata.h5map``) and counts. The scan writer feeds it events read
by ``transport/`` and hands its nodes to ``io/``; what a kind needs to know of files
written by a detector (a master file's virtual dataset, receivers' frames) it asks
for as ``FileQuery`` and gets back as ``FileFacts`` read by ``io/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from ..descriptions import FileFacts, FileQuery, KindTraits, StreamDescription  # noqa: F401 (part of the interface)


@dataclass
class Context:
    """Where a kind's nodes go and what it may need to build them."""

    #: entry name, e.g. "12.1"
    entry: str
    #: the channel's plan (group/field/short name), or None for kinds without a channel
    channel: object | None
    #: folder of our file: detector files below it are referenced relatively
    file_dir: str
    #: the scan_info in force (final at the end)
    info: dict
    #: answers to the kind's ``files_needed`` (by query)
    files: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What a kind adds to its entry, and what it says of completeness."""

    #: entry-relative path -> plan node (groups created as needed)
    nodes: dict = field(default_factory=dict)
    #: points/frames the file gives access to
    written: int = 0
    #: points/frames published (or acquired) that the file does not give
    missing: int = 0
    warnings: list = field(default_factory=list)
    #: False: published data this writer does not write (the scan is INCOMPLETE)
    accounted: bool = True
    #: an image/spectrum plot this kind offers for the entry: (signal name, node) or None
    plot: tuple | None = None


class StreamKind:
    """One kind of blissdata stream: how it is chosen, followed and finished."""

    #: the kind's name (``StreamDescription.kind``)
    name: ClassVar[str] = ""
    #: classification order: higher is tried first
    priority: ClassVar[int] = 0
    #: its events are the data points themselves, appended as they come (numeric channels)
    appends: ClassVar[bool] = False
    #: it is read while the scan runs (its events reach ``on_events``)
    follows: ClassVar[bool] = True
    #: its events are cumulative statuses: only the newest one is read each time
    cumulative: ClassVar[bool] = False
    #: its ``live`` views go into its channel's group, made with the entry
    live_group: ClassVar[bool] = False
    #: it has a place under ``instrument/`` (a ``ChannelPlan``)
    has_channel: ClassVar[bool] = True
    #: role of its channel ("frames": frames in detector files; None: from BLISS's naming)
    role: ClassVar[str | None] = None
    #: its events announce child scans (``child_scans``), whose entries the parent links
    child_scans_announced: ClassVar[bool] = False
    #: its events are its points: their dtype and shape are the numeric encoding's (those of
    #: its info otherwise: a plugin's events are statuses or counts, not its data)
    points_encoded: ClassVar[bool] = False

    @classmethod
    def accepts(cls, stream: StreamDescription) -> bool:
        raise NotImplementedError

    @classmethod
    def described(cls, stream: StreamDescription) -> StreamDescription:
        """``stream`` with the dtype and point shape this kind's data have."""
        if not cls.points_encoded or stream.encoded_shape is None:
            return stream
        return dataclasses.replace(stream, dtype=stream.encoded_dtype, shape=stream.encoded_shape)

    def __init__(self, stream: StreamDescription):
        self.stream = stream

    def traits(self) -> KindTraits:
        """What the mapping, the service and the scan writer need of this kind, as plain
        data (they never import the kinds): its class attributes and the stream's own
        announced place and reason for not being saved."""
        return KindTraits(name=self.name, role=self.role, appends=self.appends, live_group=self.live_group,
                          has_channel=self.has_channel, child_scans=self.child_scans_announced,
                          data_path=self.announced_path(), unsaved_reason=self.unsaved_reason())

    def announced_path(self) -> str | None:
        """The place in the file BLISS announced for this stream (``data_path``), if any."""
        return None

    # -- while the scan runs ------------------------------------------------
    def on_events(self, events, lost: int = 0) -> None:
        """Raw events of a kind that does not append (statuses, counts, references).

        ``lost``: events trimmed from Redis before they were read.
        """

    def progress(self) -> int | None:
        """Points/frames available so far (for the completeness protocol), or None."""
        return None

    def live(self, ctx: Context) -> dict | None:
        """Nodes to (re)write while the scan runs (a growing VDS), or None if unchanged.

        ``ctx.files`` holds the answers to ``live_files_needed``."""
        return None

    def live_files_needed(self, known: dict) -> list[FileQuery]:
        """Detector files to read before ``live`` (asked again with the answers, like
        ``files_needed``); keep it cheap: it runs at every flush period."""
        return []

    # -- at the end ---------------------------------------------------------
    def files_needed(self, known: dict) -> list[FileQuery]:
        """Detector files to read before ``finish``; asked again with the answers
        (``known``: query -> facts) until it returns nothing new."""
        return []

    def finish(self, ctx: Context) -> Outcome:
        return Outcome()

    def unsaved_reason(self) -> str | None:
        """Why this stream is not in the file (``None``: it is)."""
        return None

    def child_scans(self) -> list[tuple[str, int]]:
        """(scan key, scan number) of the child scans announced so far, in order."""
        return []
