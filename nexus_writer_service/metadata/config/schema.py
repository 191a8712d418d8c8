"""The beamline configuration: what scientists describe once, the writer adds to every scan.

Schema in pydantic (as blissdata's scan_info schemas) for the structured parts;
the free NeXus trees (``instrument``, ``sample``) are checked by ``tree.check``
because their keys are the user's own names. Every problem becomes one
``ConfigError`` line: file, line, key path, what was expected.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ... import compression
from ...nxrules import NAME_RE
from . import tree
from .units import check_units
from .yamlsource import ConfigError, YamlDocument, parse, read

def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a NeXus name (letters, digits and _ only)")
    return name


Units = Annotated[str, AfterValidator(check_units)]
NxName = Annotated[str, AfterValidator(check_name)]
#: a compression preset (defined once: ``nexus_writer_service.compression``)
Compression = Annotated[str, AfterValidator(compression.check)]


#: items of every entry (doc/layout.md): plots and techniques may not take these names
RESERVED = frozenset({"instrument", "measurement", "sample", "writer", "plotselect", "spectra", "images",
                      "notes", "title", "start_time", "end_time", "end_reason", "subscans",
                      "dataset_metadata", "user_scan_info"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectorConfig(_Strict):
    """How one BLISS counter/controller is written (key: its name, controller or channel)."""

    #: its group below ``instrument`` (and its name in ``measurement``)
    name: NxName | None = None
    #: units when BLISS publishes none for it
    units: Units | None = None
    #: ``NXdetector/type`` (diode, ionization chamber, CCD, MCA ...)
    type: str | None = None
    description: str | None = None
    #: filter of its spectra/images (wins over the scan's and the beamline's choice)
    compression: Compression | None = None
    #: MCA channel -> energy in keV: [a, b] or [a, b, c] for E = a + b*ch + c*ch**2
    energy_calibration: list[float] | None = Field(default=None, min_length=2, max_length=3)


#: application definitions whose content the writer fills in, and the channel roles each needs
APPLICATION_DEFINITIONS = {"NXfluo": ("detector", "monitor"), "NXxas": ("energy", "detector", "element", "edge"),
                           "NXscan": ("detector", "monitor")}


class PlotConfig(_Strict):
    """An extra NXdata of named channels (BLISS channel, counter or NeXus name)."""

    signal: str
    axes: list[str] = Field(default_factory=list)
    auxiliary_signals: list[str] = Field(default_factory=list)
    title: str | None = None


class TechniqueConfig(_Strict):
    description: str | None = None
    #: plots (names from ``plots``) this technique wants; the first is the entry's default plot
    plots: list[str] = Field(default_factory=list)
    #: NeXus application definition (e.g. NXxas): written in an NXsubentry named after the technique;
    #: for NXfluo, NXxas and NXscan the writer fills in what the definition requires from the
    #: channels named below (BLISS channel, counter or NeXus names, as in plots)
    definition: Annotated[str, AfterValidator(tree.check_class)] | None = None
    #: the detector: NXfluo's spectrum, NXxas's intensity, NXscan's detector data
    detector: str | None = None
    #: the monitor (NXmonitor/data)
    monitor: str | None = None
    #: NXxas: the energy channel (the scanned monochromator energy, in units of energy)
    energy: str | None = None
    #: NXscan: the scanned axis (sample/rotation_angle); absent: the scan's first motor
    axis: str | None = None
    #: NXxas: the absorbing element (symbol, e.g. Fe) and its edge (K, L3 ...)
    element: str | None = None
    edge: str | None = None

    @model_validator(mode="after")
    def _roles(self):
        for role in APPLICATION_DEFINITIONS.get(self.definition or "", ()):
            if getattr(self, role) is None:
                raise ValueError(f"{self.definition} needs '{role}' "
                                 f"(give {', '.join(APPLICATION_DEFINITIONS[self.definition])})")
        return self


class BeamlineConfig(_Strict):
    #: any NeXus base classes below NXinstrument, plus ``name`` and ``short_name``
    instrument: dict[str, Any] = Field(default_factory=dict)
    #: NXsample defaults; a scan's own sample metadata overrides them
    sample: dict[str, Any] = Field(default_factory=dict)
    detectors: dict[str, DetectorConfig] = Field(default_factory=dict)
    #: motors to record in instrument/positioners (absent: every motor BLISS publishes)
    positioners: list[str] | None = None
    plots: dict[NxName, PlotConfig] = Field(default_factory=dict)
    #: default technique of every scan (a scan may name another in scan_info["nexuswriter"]["technique"])
    technique: str | None = None
    techniques: dict[NxName, TechniqueConfig] = Field(default_factory=dict)
    #: filter of spectra and images (``nexus_writer_service.compression``): gzip (every HDF5
    #: reader opens it), bitshuffle-lz4 (fast; readers need the plugin) or none; absent: the
    #: writer's --compression
    compression: Compression | None = None

    @model_validator(mode="after")
    def _references(self):
        for kind, names in (("plots", self.plots), ("techniques", self.techniques)):
            for name in names:
                if name in RESERVED:
                    raise _Reference((kind, name), f"{name!r} is a name the writer uses in every entry "
                                                   f"(reserved: {', '.join(sorted(RESERVED))})")
        for name in self.techniques:
            if name in self.plots:
                raise _Reference(("techniques", name), f"{name!r} is also a plot: plots and techniques are "
                                                       "both entry items, give them different names")
        if self.technique is not None and self.technique not in self.techniques:
            raise _Reference(("technique",), f"{self.technique!r} is not one of techniques "
                                             f"({', '.join(self.techniques) or 'none defined'})")
        for name, tech in self.techniques.items():
            for i, plot in enumerate(tech.plots):
                if plot not in self.plots:
                    raise _Reference(("techniques", name, "plots", i),
                                     f"{plot!r} is not one of plots ({', '.join(self.plots) or 'none defined'})")
        return self


class _Reference(Exception):
    """A cross-reference error with its location (pydantic would lose the location)."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc, self.message = loc, message


def _expected_keys(loc: tuple) -> list[str]:
    """Field names of the model that holds ``loc``'s last key."""
    model: Any = BeamlineConfig
    parts = list(loc[:-1])
    while parts:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        annotation = model.model_fields[parts.pop(0)].annotation
        while get_origin(annotation) is not None and get_origin(annotation) is not Annotated:
            args = [a for a in get_args(annotation) if a is not type(None)]
            if get_origin(annotation) is dict:
                parts.pop(0) if parts else None
                args = args[1:]
            annotation = args[-1] if args else None
        model = annotation
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _message(err: dict) -> str:
    kind, loc = err["type"], err["loc"]
    if kind == "extra_forbidden":
        expected = _expected_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), expected, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key ({hint}expected one of: {', '.join(expected)})"
    if kind == "missing":
        return "required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if kind != "value_error":
        msg = f"expected {msg.removeprefix('Input should be ')}, got {err['input']!r}"
    return msg


def validate(doc: YamlDocument) -> BeamlineConfig:
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise doc.error((), f"expected a mapping of {', '.join(BeamlineConfig.model_fields)}, "
                            f"got {type(data).__name__}")
    try:
        for key in ("instrument", "sample"):
            if isinstance(data.get(key), dict):
                tree.check(data[key], (key,), "NXinstrument" if key == "instrument" else "NXsample")
        return BeamlineConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        raise doc.error(loc, _message(err)) from None
    except (tree.TreeError, _Reference) as exc:
        raise doc.error(exc.loc, exc.message) from None


def loads(text: str, source: str = "<string>") -> BeamlineConfig:
    return validate(parse(text, source))


def load(path: str) -> BeamlineConfig:
    return validate(read(path))


def load_raw(path: str) -> dict:
    """The file's data once valid: raw, so that layers merge as the user wrote them."""
    doc = read(path)
    validate(doc)
    return doc.data or {}


def from_dict(data: dict, source: str) -> BeamlineConfig:
    """Validate data that arrived without its text (scan_info): errors name keys, not lines."""
    return validate(YamlDocument(data, source, None))


def merged(*layers: dict | None) -> dict:
    """Deep merge of raw config dicts, later layers winning (writer file < session < scan)."""
    out: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


__all__ = ["BeamlineConfig", "DetectorConfig", "PlotConfig", "TechniqueConfig", "ConfigError",
           "load", "load_raw", "loads", "from_dict", "merged", "validate"]
