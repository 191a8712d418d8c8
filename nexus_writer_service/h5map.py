"""The plan vocabulary: the pydantic models of an HDF5 tree (``blissdata.h5map``).

A plan (``mapping``, ``kinds``) is a tree of these models and ``io.tree`` writes it. They are
blissdata's own (``blissdata.h5map``, blissdata 2.1 and later: the tree BLISS 2.4 publishes in
``scan_info["h5maps"]``), except under blissdata 2.0.x (BLISS 2.2), which has no h5map: then
``h5map_v2_0`` provides the same models. Every module takes them from here, never from
blissdata, so that one choice holds for the whole process.

A leaf module: it imports no other module of this package but ``h5map_v2_0``.
"""

from __future__ import annotations

from importlib.util import find_spec

#: where the models come from: "blissdata" (blissdata >= 2.1) or "nexus_writer_service" (2.0.x)
if find_spec("blissdata.h5map") is not None:
    from blissdata.h5map import (
        DataItem,
        Dataset,
        ExternalBinaryDataset,
        ExternalBinaryFile,
        ExternalLink,
        Group,
        HDF5Item,
        Inline,
        InlineBase64,
        InlineRaw,
        SoftLink,
        SpaceSelection,
        Stream,
        VirtualDataset,
        VirtualSource,
    )

    PROVIDER = "blissdata"
else:  # blissdata 2.0.x
    from .h5map_v2_0 import (  # type: ignore[assignment]
        DataItem,
        Dataset,
        ExternalBinaryDataset,
        ExternalBinaryFile,
        ExternalLink,
        Group,
        HDF5Item,
        Inline,
        InlineBase64,
        InlineRaw,
        SoftLink,
        SpaceSelection,
        Stream,
        VirtualDataset,
        VirtualSource,
    )

    PROVIDER = "nexus_writer_service"

__all__ = [
    "PROVIDER", "DataItem", "Dataset", "ExternalBinaryDataset", "ExternalBinaryFile", "ExternalLink", "Group",
    "HDF5Item", "Inline", "InlineBase64", "InlineRaw", "SoftLink", "SpaceSelection", "Stream", "VirtualDataset",
    "VirtualSource",
]
