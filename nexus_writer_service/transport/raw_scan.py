"""Loading a scan as raw events: blissdata's stream plugins are never built.

blissdata's ``load_scan`` wraps each stream in its plugin's class (``lima``,
``lima2``, ``mosca``...), which fetches frames from detector servers. The writer
needs none of it (each kind reads ``info`` and the raw event stream), and building
them costs at every load: blissdata-lima2 imports tango and makes a ``DeviceProxy``
to the conductor for each lima2 stream (~0.15 s, and a logged traceback when the
conductor is not there); a plugin not installed logs a warning at each load.

``RawDataStore`` (what ``transport.connection.connect`` gives the writer) is
blissdata's ``DataStore`` whose ``load_scan`` has one change: every stream is an
``EventsOnly`` (its event stream, nothing else). blissdata has no option for it, so
this overrides the one method that wraps streams (``Scan._wrap_event_stream``, and loads with
``Scan._load``: private, in every blissdata 2.x, listed in ``blissdata_api.PRIVATE``); other
blissdata clients in the process are not affected.
"""

from __future__ import annotations

import datetime
import typing

from redis_om.model import model as om  # blissdata's document models (its dependency)

from .blissdata_api import DataStore, Scan


class EventsOnly:
    """A stream of any kind, seen as its raw events (``event_stream``)."""

    __slots__ = ("event_stream",)

    def __init__(self, event_stream):
        self.event_stream = event_stream

    @property
    def name(self) -> str:
        return self.event_stream.name

    @property
    def info(self) -> dict:
        return self.event_stream.info


class RawScan(Scan):
    def _wrap_event_stream(self, event_stream):
        return EventsOnly(event_stream)


class RawDataStore(DataStore):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plain_documents(self._scan_model)

    def load_scan(self, key):
        """The scan at ``key`` (blissdata's ``Scan``, state and info as usual), its streams raw."""
        return RawScan._load(self, key)


#: field types redis-om 1.x converts in a document before validating it
_CONVERTED = (datetime.date, datetime.datetime, datetime.time, bytes)


def plain_documents(model) -> bool:
    """Scan documents validated as they come: the store's ``model.get`` without redis-om's walks.

    redis-om 1.x's ``JsonModel.get`` walks every document twice before validating it
    (timestamps to datetimes, base64 to bytes, for fields of those types), scan_info's
    every key included: two thirds of a scan's load, which blissdata makes at every state
    change it sees (three or four per scan, hundreds of short scans a minute). blissdata's
    scan model has no such field, so the walks change nothing: the document is validated
    directly (the same model, tests/integration/test_blissdata_contract.py). The model is
    this store's own class (blissdata makes one per ``DataStore``): no other store changes.
    A model with such a field, or a redis-om without the walks, is left as it is (False).
    """
    if not hasattr(om, "convert_timestamp_to_datetime") or not hasattr(model, "model_validate"):
        return False
    if _has_converted_field(model, set()):
        return False
    key_field = model._meta.primary_key.name

    def get(cls, pk):
        document = cls.db().json().get(cls.make_key(pk))
        if document is None:
            raise om.NotFoundError
        document[key_field] = pk
        return cls.model_validate(document)

    model.get = classmethod(get)
    return True


def _has_converted_field(model, seen: set) -> bool:
    if model in seen:
        return False
    seen.add(model)
    for field in model.model_fields.values():
        pending = [field.annotation]
        while pending:
            kind = pending.pop()
            if isinstance(kind, type) and issubclass(kind, _CONVERTED):
                return True
            if isinstance(kind, type) and hasattr(kind, "model_fields") and _has_converted_field(kind, seen):
                return True
            pending.extend(typing.get_args(kind))
    return False


__all__ = ["EventsOnly", "RawDataStore"]
