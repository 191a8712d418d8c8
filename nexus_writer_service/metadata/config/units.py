"""Units as NeXus wants them: strings a units library understands (pint)."""

from __future__ import annotations

import difflib
import functools

import pint


#: units everybody writes that pint spells otherwise
_UNIT_ALIASES = ("Angstrom = angstrom", "steps = count = step")
_COMMON_UNITS = ("s", "ms", "us", "mm", "um", "nm", "m", "deg", "mrad", "urad", "rad", "eV", "keV",
                 "GeV", "A", "mA", "K", "degC", "counts", "cps", "Hz", "kHz", "V", "W", "bar", "mbar",
                 "angstrom", "Angstrom")


@functools.lru_cache(maxsize=1)
def _units_registry():
    ureg = pint.UnitRegistry()
    for definition in _UNIT_ALIASES:
        ureg.define(definition)
    return ureg


def check_units(units: str) -> str:
    if units == "":
        return units
    try:
        _units_registry().parse_units(units)
    except Exception:
        same_letters = [u for u in _COMMON_UNITS if u.lower() == units.lower()]
        close = same_letters or difflib.get_close_matches(units, _COMMON_UNITS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else " (e.g. 'mm', 'keV', 'deg', 's', 'counts')"
        raise ValueError(f"{units!r} is not a unit{hint}") from None
    return units
