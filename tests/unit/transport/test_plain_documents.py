"""Which document models are validated without redis-om's walks (transport/raw_scan.py).

The walks convert fields of date/time and bytes types; a model with one anywhere in
its tree (nested models, optionals, containers) keeps redis-om's own ``get``.
"""

from __future__ import annotations

import datetime
from typing import Optional

import pydantic
import pytest

from nexus_writer_service.transport.raw_scan import _has_converted_field


class Stream(pydantic.BaseModel):
    encoding: dict | str | None = None


class Identity(pydantic.BaseModel):
    name: str
    number: int
    path: str | None = None


class ScanLike(pydantic.BaseModel):
    id: Identity
    info: dict
    state_stream: Stream
    data_streams: dict[str, Stream]


class Stamped(pydantic.BaseModel):
    when: Optional[datetime.datetime] = None


class Raw(pydantic.BaseModel):
    payload: list[bytes]


@pytest.mark.parametrize("model, converted", [
    (ScanLike, False),
    (Stamped, True),
    (Raw, True),
    (pydantic.create_model("Nested", inner=(dict[str, Stamped], ...)), True),
    (pydantic.create_model("Day", day=(datetime.date, ...)), True),
    (pydantic.create_model("Plain", value=(float, ...), tags=(list[str], ...)), False),
])
def test_models_with_converted_fields_are_found_at_any_depth(model, converted):
    assert _has_converted_field(model, set()) is converted
