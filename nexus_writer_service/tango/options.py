"""ESRF's writer-option device properties, and what our writer does with each (no Tango here).

A beamline that switches from ESRF's writer keeps its ``NexusWriter`` devices and their
properties. ESRF's device has six boolean properties that change how files are written;
each is either honoured (what it asks is what our writer does anyway) or refused: the
device is then FAULT from its start, its status saying which property and why, so that
BLISS refuses the session's scans with that reason instead of writing files other than
the ones asked for. A property left at ESRF's default (False) asks for nothing.
"""

from __future__ import annotations

import logging

#: property -> (ESRF's meaning, True honoured?, what we do)
WRITER_OPTIONS: dict[str, tuple[str, bool, str]] = {
    "keepshape": ("keep the shape of multi-dimensional grid scans", False,
                  "our measurement datasets stay flat (one point after the other); the mesh shape "
                  "is in the default plot (plotselect, a virtual dataset)"),
    "multivalue_positioners": ("group positioner values", False,
                               "our positioners are one dataset each (instrument/positioners)"),
    "enable_external_nonhdf5": ("link non-HDF5 detector files (EDF) by absolute path", True,
                                "we always reference EDF frames as external storage, never copy them"),
    "disable_external_hdf5": ("no virtual datasets over detector HDF5 files", False,
                              "our Lima, Lima2 and MOSCA data are virtual datasets over the "
                              "detectors' files"),
    "copy_non_external": ("copy detector data into the scan file", False,
                          "we never copy detector data: their files are referenced"),
    "noconfig": ("ignore the writer metadata BLISS publishes", False,
                 "we always write the metadata of the session's generators"),
}


def refusals(values: dict[str, bool]) -> list[str]:
    """One sentence per writer-option property set to what our writer cannot do.

    ``values``: property -> value as the device read it (absent or False: ESRF's default).
    """
    out = []
    for name, value in values.items():
        if name not in WRITER_OPTIONS or not value:
            continue
        meaning, honoured, ours = WRITER_OPTIONS[name]
        if not honoured:
            out.append(f"device property {name}=True ({meaning}) is not supported by nexus_writer_service: "
                       f"{ours}; delete the property or set it to False")
    return out


#: ESRF's enumerations of log levels (attribute values 0-5), as Python logging levels
LOG_LEVELS = (logging.NOTSET, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
LOG_LEVEL_NAMES = ("NOTSET", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def level_index(level: int) -> int:
    """The enumeration value of a Python logging level (the nearest one not above it)."""
    best = 0
    for i, known in enumerate(LOG_LEVELS):
        if known <= level:
            best = i
    return best


#: Python logging level -> Tango log level (``tango.LogLevel``: OFF 0, FATAL 1 ... DEBUG 5)
TANGO_LEVELS = {logging.NOTSET: 0, logging.DEBUG: 5, logging.INFO: 4, logging.WARNING: 3,
                logging.ERROR: 2, logging.CRITICAL: 1}


def tango_verbosity(name: str) -> int:
    """``--log_tango LEVEL`` as the Tango server's ``-vN`` (0: no option, Tango stays quiet)."""
    level = logging.getLevelName(name.upper())
    return TANGO_LEVELS.get(level, 0) if isinstance(level, int) else 0
