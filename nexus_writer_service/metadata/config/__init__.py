"""Beamline configuration in YAML: instrument, sample defaults, detectors, positioners,
plots, techniques. See ``examples/`` and doc/configuration.md.

The same file is used on both sides: given to the writer (``--config``) and/or named
in the session's Beacon configuration, where the session validates it and publishes it
with every scan. Dependencies: PyYAML, pydantic, pint (all present next to BLISS).
"""

from .schema import (BeamlineConfig, DetectorConfig, PlotConfig, TechniqueConfig, from_dict, load,
                     load_raw, loads, merged)
from .yamlsource import ConfigError

__all__ = ["BeamlineConfig", "DetectorConfig", "PlotConfig", "TechniqueConfig", "ConfigError",
           "load", "load_raw", "loads", "from_dict", "merged"]
