"""Stream kinds: one module per kind of blissdata stream, found in a registry.

blissdata itself finds its stream classes by entry point (group ``blissdata``); the
writer does the same with its own group, ``nexus_writer_service.kinds``, whose entry
points name a ``StreamKind`` subclass. The kinds shipped here are registered on
import. Adding a kind: one module with a ``StreamKind`` subclass decorated with
``@register`` (imported below, or published through the entry point), and its tests
(see doc/design.md).
"""

from __future__ import annotations

import dataclasses
import logging
from importlib.metadata import entry_points

from ..descriptions import ScanDescription, StreamDescription
from .base import Context, FileFacts, FileQuery, KindTraits, Outcome, StreamKind

_logger = logging.getLogger(__name__)

_KINDS: list[type[StreamKind]] = []
_ENTRY_POINT_GROUP = "nexus_writer_service.kinds"
_external_loaded = False


def register(cls: type[StreamKind]) -> type[StreamKind]:
    """Class decorator: make a kind known (tried by descending ``priority``)."""
    if cls not in _KINDS:
        _KINDS.append(cls)
        _KINDS.sort(key=lambda k: -k.priority)
    return cls


def _load_external() -> None:
    global _external_loaded
    if _external_loaded:
        return
    _external_loaded = True
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        try:
            register(ep.load())
        except Exception:  # a broken third-party kind must not stop the writer
            _logger.warning("stream kind %r (entry point) cannot be loaded: ignored", ep.name, exc_info=True)


def kind_of(stream: StreamDescription) -> type[StreamKind]:
    """The kind that takes this stream (``unsupported`` takes what no other does)."""
    _load_external()
    for cls in _KINDS:
        try:
            if cls.accepts(stream):
                return cls
        except Exception:  # odd info must not break classification of the others
            _logger.debug("kind %s failed on %s", cls.name, stream.name, exc_info=True)
    return by_name("unsupported")


def by_name(name: str) -> type[StreamKind]:
    for cls in _KINDS:
        if cls.name == name:
            return cls
    raise KeyError(name)


def classify(desc: ScanDescription) -> ScanDescription:
    """``desc`` with every stream's kind decided and its traits attached (plain data:
    the mapping, the service and the scan writer read them, never this registry)."""
    return dataclasses.replace(desc, streams=[_classified(s) for s in desc.streams])


def _classified(stream: StreamDescription) -> StreamDescription:
    if stream.kind and stream.traits is not None:
        return stream
    kind = handler(stream)
    return dataclasses.replace(kind.stream, kind=kind.name, traits=kind.traits())


def handler(stream: StreamDescription) -> StreamKind:
    cls = by_name(stream.kind) if stream.kind else kind_of(stream)
    return cls(cls.described(stream))


# the kinds shipped with the writer (each registers itself)
from . import numeric, hdf5_fallback, lima, lima2, mosca, json_events, sequence, unsupported  # noqa: E402,F401

__all__ = ["register", "kind_of", "by_name", "classify", "handler",
           "StreamKind", "Context", "Outcome", "FileQuery", "FileFacts", "KindTraits"]
