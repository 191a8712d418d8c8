"""blissdata's scan_info schema (``blissdata.schemas.scan_info``), for the mapping.

The mapping checks scan_info against the types blissdata declares for it, and must not import
blissdata (it would then sit on the Redis side of the layers). These are pydantic TypedDicts:
no Redis, the same file in every supported blissdata generation, so a leaf may hold them, as
``h5map`` holds blissdata's tree models.

A leaf module: it imports no other module of this package.
"""

from __future__ import annotations

import typing

from blissdata.schemas.scan_info import ChainDict, ChannelDict, ScanInfoDict

#: the top-level scan_info keys blissdata's schema declares
SCAN_INFO_KEYS = frozenset(typing.get_type_hints(ScanInfoDict))

__all__ = ["ChainDict", "ChannelDict", "SCAN_INFO_KEYS"]
