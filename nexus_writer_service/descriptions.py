"""What the writer knows of a scan and its streams: plain data, no Redis objects.

The transport layer fills these from blissdata (or tests from fixtures); the
stream kinds (``kinds/``) and the mapping read them. They sit below both so that
neither layer imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .vds_mapping import VdsMapping


@dataclass(frozen=True)
class KindTraits:
    """What a stream's kind (``kinds/``) decides for the layers that must not know the
    kinds: the mapping places the stream by these, the service plots by them, the scan
    writer schedules by them. ``kinds.classify`` attaches them to each description;
    a new kind states them by its class attributes and never touches these layers.
    """

    #: the kind's name (logs, the writer's note; never compared to decide anything)
    name: str = ""
    #: role its channel takes ("frames": frames in detector files; "spectrum_files": spectra
    #: in detector files; "events": JSON documents; None: from BLISS's channel naming)
    role: str | None = None
    #: its events are the points, appended to a growing dataset as they come
    appends: bool = False
    #: its live views grow in its channel's group, which is made with the entry
    live_group: bool = False
    #: it has a place under ``instrument/`` (a channel plan)
    has_channel: bool = True
    #: its events announce child scans, whose entries the parent links (scan sequences)
    child_scans: bool = False
    #: the ``data_path`` BLISS announced for the stream (its place in the file), if any
    data_path: str | None = None
    #: why the stream is not written (None: it is)
    unsaved_reason: str | None = None


@dataclass(frozen=True)
class StreamDescription:
    name: str
    #: the writer's kind of this stream (``kinds.classify`` decides; "" = not yet decided)
    kind: str = ""
    #: dtype and shape of one point (or frame); -1 marks a free (ragged) dimension. Before
    #: ``kinds.classify``, the stream info's; its kind may take the encoding's instead
    dtype: str | None = None
    shape: tuple = ()
    info: dict = field(default_factory=dict)
    #: how blissdata encodes its events in Redis: "numeric" or "json"
    encoding: str = "numeric"
    #: the blissdata plugin named by the stream (``info["plugin"]``, or what transport read
    #: from an older blissdata's naming), if any
    plugin: str | None = None
    #: what its kind decides for the other layers (``kinds.classify``; None = not yet classified)
    traits: KindTraits | None = None
    #: dtype and shape of one event as the numeric encoding declares them (None: another
    #: encoding): the points themselves for kinds whose events are the data, not for plugins
    #: whose numeric events are frame counts
    encoded_dtype: str | None = None
    encoded_shape: tuple | None = None


def _dtype(value) -> str | None:
    try:
        return np.dtype(value).str if value is not None else None
    except TypeError:
        return None


def _shape(value) -> tuple:
    try:
        return tuple(int(d) for d in value) if isinstance(value, (list, tuple)) else ()
    except (TypeError, ValueError):
        return ()


def describe_stream(name: str, info: dict | None, encoding: dict | None,
                    plugin: str | None = None) -> StreamDescription:
    """A stream's description from what Redis holds of it: its info and its encoding, both
    kept (which of them describes the points is the stream kind's to say: ``kinds``).

    ``plugin``: the plugin the stream names, when the transport read it from elsewhere than
    ``info["plugin"]`` (an older blissdata's naming).
    """
    info, encoding = dict(info or {}), dict(encoding or {})
    enc_type = str(encoding.get("type", ""))
    plugin = plugin or info.get("plugin")
    encoded_dtype = encoded_shape = None
    if enc_type == "numeric":
        encoded_dtype = _dtype(encoding.get("dtype_str", info.get("dtype")))
        encoded_shape = _shape(encoding.get("shape", info.get("shape")))
    return StreamDescription(name, "", _dtype(info.get("dtype")), _shape(info.get("shape")), info, enc_type,
                             str(plugin) if plugin else None, encoded_dtype=encoded_dtype,
                             encoded_shape=encoded_shape)


@dataclass
class ScanDescription:
    key: str
    name: str
    number: int
    session: str
    info: dict
    streams: list[StreamDescription]
    path: str | None = None
    data_policy: str | None = None
    #: ESRF data policy identity (None otherwise)
    proposal: str | None = None
    collection: str | None = None
    dataset: str | None = None


@dataclass(frozen=True)
class FileQuery:
    """A detector file (or files matching ``pattern``) and the dataset wanted in it."""

    path: str = ""
    dataset: str = ""
    #: glob pattern instead of a path: every matching file
    pattern: str = ""
    #: "dataset": an HDF5 dataset's shape/type/virtual sources; "values": also its values
    #: (small datasets: a receiver's frame indices); "edf": each frame's raw bytes;
    #: "list": only which files match (none is opened)
    what: str = "dataset"


@dataclass
class FileFacts:
    """What ``io`` found of one queried file's dataset."""

    path: str
    dataset: str
    exists: bool = False
    shape: tuple = ()
    dtype: str | None = None
    #: a virtual dataset's mappings, whole frames (a single one over the dataset itself when
    #: HDF5's mappings take parts of frames)
    sources: list[VdsMapping] = field(default_factory=list)
    #: the dataset's values (``what="values"``)
    values: np.ndarray | None = None
    #: names of the items in the dataset's place when it is a group (sparse frames)
    members: tuple = ()
    #: EDF: (byte offset, byte size, numpy dtype) of each frame stored raw, None where not raw
    raw: list | None = None
