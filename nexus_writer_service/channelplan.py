"""Where one data channel goes in its entry (``ChannelPlan``): the vocabulary the
mapping (which makes the plans) and the stream kinds (which put their nodes at a
plan's place) share, below both so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from .descriptions import KindTraits
from .fillvalues import fill_value

#: roles of spectra (MCA): their data are counts unless BLISS or the beamline says otherwise
SPECTRUM_ROLES = ("spectrum", "spectrum_files")
SPECTRUM_UNITS = "counts"


@dataclass
class ChannelPlan:
    stream: str
    entry: str
    #: group below ``instrument`` and field in it
    group: str
    field: str
    nx_class: str
    short_name: str
    role: str  # "axis", "timer", "counter", "spectrum", "image", "frames" (frames in detector
    #            files), "spectrum_files" (spectra in detector files), "events" (JSON documents)
    dtype: str
    point_shape: tuple
    units: str | None = None
    display_name: str = ""
    #: where BLISS's data_path was refused, why
    note: str | None = None
    #: static fields of its group from the beamline configuration (type, description)
    device_fields: dict = dc_field(default_factory=dict)
    #: the group BLISS's data_path names when the configuration renamed it: a link keeps
    #: the path valid for readers that fall back to the file (blissdata hdf5-fallback)
    bliss_group: str | None = None
    #: what the stream's kind decided (``kinds.classify``): how its data reach the file
    traits: KindTraits = dc_field(default_factory=KindTraits)

    @property
    def appends(self) -> bool:
        """Its points come through Redis and are appended to its dataset as they arrive."""
        return self.traits.appends

    @property
    def path(self) -> str:
        return f"instrument/{self.group}/{self.field}"

    @property
    def ndim(self) -> int:
        return len(self.point_shape)

    @property
    def ragged(self) -> bool:
        return -1 in self.point_shape

    @property
    def fill_value(self):
        return fill_value(self.dtype)

    @property
    def interpretation(self) -> str | None:
        return {1: "spectrum", 2: "image"}.get(self.ndim)

    @property
    def is_spectrum(self) -> bool:
        return self.role in SPECTRUM_ROLES

    @property
    def long_name(self) -> str | None:
        """What viewers label a spectrum with (h5web and silx take ``@long_name`` over the
        name): its measurement name and units, ``fluo_det0 (counts)``."""
        if self.is_spectrum and self.short_name:
            return f"{self.short_name} ({self.units})" if self.units else self.short_name
        return None

    @property
    def attributes(self) -> dict:
        """The attributes of the channel's dataset (and of views of it): units,
        interpretation, long name, those it has."""
        values = {"units": self.units, "interpretation": self.interpretation, "long_name": self.long_name}
        return {k: v for k, v in values.items() if v is not None}
