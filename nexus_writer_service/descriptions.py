"""What the mapping layer knows of a scan: plain data, no Redis objects.

The transport layer fills these from blissdata; tests fill them from fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StreamDescription:
    name: str
    #: "array" (numeric), "scan" (scan sequence references), "json", "lima", or
    #: anything else a newer blissdata may invent (written as "unsupported")
    kind: str
    dtype: str | None = None
    #: shape of one point; -1 marks a free (ragged) dimension
    shape: tuple = ()
    info: dict = field(default_factory=dict)


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

    def stream(self, name: str) -> StreamDescription:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)
