"""The plan vocabulary for blissdata 2.0.x, which has no ``blissdata.h5map``.

blissdata 2.1 and later define the HDF5 tree BLISS 2.4 publishes in ``scan_info["h5maps"]``
as pydantic models (``blissdata.h5map``); our plans are such trees (``nexus_writer_service.h5map``
picks blissdata's models where they exist). BLISS 2.2 runs blissdata 2.0.x: these are the same
models, written here for the part of the schema the writer uses (no ``Compound``), with the same
field names, JSON form, coercions and refusals, and without numpydantic (not in BLISS 2.2's
environment). tests/integration/test_blissdata_contract.py builds the same trees with both and compares
them, and validates ours with blissdata's where both are importable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    Base64Bytes,
    BaseModel,
    Discriminator,
    Field,
    NonNegativeInt,
    RootModel,
    SerializationInfo,
    Tag,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

#: numpy dtype names of numbers and booleans (``Inline.dtype``)
_DType = Annotated[str, Field(pattern=r"^(bool|(int|uint)(8|16|32|64)|float(16|32|64|128)|complex(64|128|256))$")]
#: numpy array-interface type strings of numbers and booleans, with byte order
_BinaryDType = Annotated[str, Field(pattern=r"^(\|?[iub]1|[><]([iuf][248]|[fc](8|16)|c32))$")]


class InlineRaw(RootModel):
    """A literal value (scalar or array of any shape) kept as a numpy array: integers as
    int64, floats as float64 (finite only: NaN and inf go through ``Inline``), booleans, strings."""

    root: Any

    @field_validator("root", mode="before")
    @classmethod
    def _coerce(cls, value):
        array = np.asarray(value)
        kind = array.dtype.kind
        if kind == "f":
            if not np.isfinite(array).all():
                raise ValueError("non-finite values (nan, -inf, inf) are not allowed.")
            return array.astype(np.float64, copy=False)
        if kind in "iu":
            return array.astype(np.int64, copy=False)
        if kind in "bU":
            return array
        raise ValueError(f"InlineRaw holds booleans, integers, floats or strings, not {array.dtype}")

    @model_serializer(mode="wrap")
    def _serialize(self, handler, info: SerializationInfo):
        if info.mode == "json":
            return self.root.tolist()
        return self.root

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return np.array_equal(self.root, other.root)
        return NotImplemented

    def decode(self):
        value = self.root
        if value.dtype.kind == "U":  # as h5py reads strings back: variable-length, object dtype
            return np.vectorize(lambda x: x.encode(), otypes=[np.dtype("O", metadata={"vlen": str})])(value)
        return value


class _InlineValue(RootModel):
    """Any JSON value but a mapping or null; numpy scalars become Python ones, NaN, inf and
    complex numbers strings (numpy reads them back with ``Inline.dtype``)."""

    root: Union[str, bool, int, float, list["_InlineValue"]]

    @field_validator("root", mode="before")
    @classmethod
    def _coerce(cls, value):
        def single(item):
            if not np.issubdtype(type(item), np.number):
                return item
            if np.issubdtype(type(item), np.complexfloating) or not np.isfinite(item):
                return str(item)
            return item.item() if isinstance(item, np.generic) else item

        def every(value):
            if isinstance(value, list):
                return [every(v) for v in value]
            if isinstance(value, np.ndarray) and value.ndim > 1:
                return value
            if isinstance(value, np.ndarray) and value.ndim > 0:
                return [every(value[i]) for i in range(value.shape[0])]
            return single(value)

        return every(value)


class Inline(BaseModel):
    """A value of an explicit numpy type (``dtype``): NaN and inf as ``"nan"``, ``"inf"``."""

    type: Literal["inline"] = "inline"
    dtype: _DType
    value: _InlineValue

    def decode(self):
        return np.array(self.value.model_dump(), dtype=self.dtype)


class InlineBase64(BaseModel):
    """A binary value, base64 encoded."""

    type: Literal["inline_b64"] = "inline_b64"
    dtype: _BinaryDType
    shape: list[int] | None = None
    value: Base64Bytes

    def decode(self):
        value = np.frombuffer(self.value, dtype=self.dtype)
        return value.reshape(self.shape) if self.shape is not None else value


class Stream(BaseModel):
    """A dataset's values are a blissdata stream's (by name): written as they come."""

    type: Literal["stream"] = "stream"
    stream: str

    def decode(self):
        raise TypeError("Stream model is just a reference, can't use decode()")


def _data_item_type(v: Any) -> str | None:
    if isinstance(v, dict):
        return v.get("type")
    if issubclass(type(v), BaseModel):
        return getattr(v, "type", "raw")
    return "raw"


DataItemType = Annotated[
    Union[
        Annotated[Inline, Tag("inline")],
        Annotated[InlineBase64, Tag("inline_b64")],
        Annotated[Stream, Tag("stream")],
        Annotated[InlineRaw, Tag("raw")],
    ],
    Discriminator(_data_item_type),
]
DataItem = TypeAdapter(DataItemType)


class Dataset(BaseModel):
    """A dataset: attributes and a value (given alone, a value is a dataset without attributes)."""

    type: Literal["dataset"] = "dataset"
    attributes: dict[str, DataItemType] = Field(default_factory=dict)
    value: DataItemType

    @model_serializer(mode="wrap")
    def _serialize(self, handler):
        return handler(self) if self.attributes else handler(self)["value"]

    @model_validator(mode="before")
    @classmethod
    def _value_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type", "dataset") == "dataset":
            return data
        return {"type": "dataset", "value": data}


class ExternalBinaryFile(BaseModel):
    name: str
    offset: NonNegativeInt
    size: NonNegativeInt | None = None  # None: H5F_UNLIMITED


class _AttributesIfAny(BaseModel):
    """Serialised without ``attributes`` when there are none (as blissdata's models)."""

    @model_serializer(mode="wrap")
    def _serialize(self, handler):
        out = handler(self)
        if not self.attributes:
            out.pop("attributes", None)
        return out


class ExternalBinaryDataset(_AttributesIfAny):
    """A dataset whose bytes are in other (non-HDF5) files: HDF5 external storage."""

    type: Literal["external_binary_dataset"] = "external_binary_dataset"
    attributes: dict[str, DataItemType] = Field(default_factory=dict)
    dtype: _BinaryDType
    shape: list[int]
    files: list[ExternalBinaryFile] = Field(min_length=1)



def _all_ones_hidden(value):
    return None if value is None or all(x == 1 for x in value) else value


class SpaceSelection(BaseModel):
    """An HDF5 hyperslab: ``start``, ``count`` and optional ``stride``, ``block`` (all ones: None)."""

    start: list[NonNegativeInt]
    stride: list[NonNegativeInt] | None = None
    count: list[NonNegativeInt]
    block: list[NonNegativeInt] | None = None

    @field_validator("stride", "block", mode="after")
    @classmethod
    def _hide_all_ones(cls, value):
        return _all_ones_hidden(value)


class VirtualSource(BaseModel):
    vspace: SpaceSelection
    src_file: str
    src_dataset: str
    src_space: SpaceSelection


class VirtualDataset(_AttributesIfAny):
    type: Literal["virtual_dataset"] = "virtual_dataset"
    attributes: dict[str, DataItemType] = Field(default_factory=dict)
    dtype: _BinaryDType
    shape: list[int]
    virtual_sources: list[VirtualSource] = Field(min_length=1)



class SoftLink(BaseModel):
    type: Literal["soft_link"] = "soft_link"
    target_path: str


class ExternalLink(BaseModel):
    type: Literal["external_link"] = "external_link"
    target_file: str
    target_path: str


_HDF5_TYPES = {"group", "dataset", "external_binary_dataset", "soft_link", "external_link", "virtual_dataset"}


def _hdf5_item_type(v: Any) -> str:
    # a dataset may be given as its value alone ("inline", "stream", a raw value...)
    if isinstance(v, dict):
        kind = v.get("type")
    elif isinstance(v, BaseModel):
        kind = getattr(v, "type", None)
    else:
        return "dataset"
    return kind if kind in _HDF5_TYPES else "dataset"


HDF5ItemType = Annotated[
    Union[
        Annotated["Group", Tag("group")],
        Annotated[Dataset, Tag("dataset")],
        Annotated[ExternalBinaryDataset, Tag("external_binary_dataset")],
        Annotated[SoftLink, Tag("soft_link")],
        Annotated[ExternalLink, Tag("external_link")],
        Annotated[VirtualDataset, Tag("virtual_dataset")],
    ],
    Discriminator(_hdf5_item_type),
]


class Group(BaseModel):
    type: Literal["group"] = "group"
    attributes: dict[str, DataItemType] = Field(default_factory=dict)
    children: dict[str, HDF5ItemType] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _serialize(self, handler):
        out = handler(self)
        if not self.attributes:
            out.pop("attributes", None)
        if not self.children:
            out.pop("children", None)
        return out


Group.model_rebuild()
HDF5Item = TypeAdapter(HDF5ItemType)

__all__ = [
    "DataItem", "DataItemType", "Dataset", "ExternalBinaryDataset", "ExternalBinaryFile", "ExternalLink",
    "Group", "HDF5Item", "HDF5ItemType", "Inline", "InlineBase64", "InlineRaw", "SoftLink", "SpaceSelection",
    "Stream", "VirtualDataset", "VirtualSource",
]
