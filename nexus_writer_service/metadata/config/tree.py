"""Free NeXus trees written by hand (``instrument``, ``sample``): checked key by key.

A mapping with ``NX_class`` is a group, a mapping with ``value`` is a field with
units, anything else is a field value. This is the silx NeXus-dict idea, spelled
for YAML: ``energy: {value: 17.0, units: keV}`` instead of ``energy@units``.
"""

from __future__ import annotations

import difflib
from typing import Any

from ...nxrules import ALLOWED_GROUPS, NAME_RE, NX_CLASS_RE
from .units import check_units

#: keys of a field given as a mapping
FIELD_KEYS = ("value", "units", "long_name", "description")
#: NXinstrument's own fields that are not NeXus trees
_INSTRUMENT_KEYS = ("name", "short_name")


class TreeError(Exception):
    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc, self.message = loc, message


def check_class(name: str, allowed: frozenset | None = None) -> str:
    if not isinstance(name, str) or not NX_CLASS_RE.match(name):
        raise ValueError(f"{name!r} is not a NeXus class name (NXsomething)")
    if allowed is not None and name not in allowed:
        close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"expected one of: {', '.join(sorted(allowed))}"
        raise ValueError(f"{name} is not allowed here ({hint})")
    return name


def _check_value(value: Any, loc: tuple) -> None:
    if isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, list) and value:
        kinds = {type(v) for v in value}
        if kinds <= {int, float} or kinds == {str} or kinds == {bool}:
            return
        if all(isinstance(v, list) for v in value):
            for i, v in enumerate(value):
                _check_value(v, loc + (i,))
            return
    if value is None:
        raise TreeError(loc, "no value (give one, or remove the key)")
    raise TreeError(loc, f"expected a number, text, or a list of one kind of them, got {value!r}")


def _check_field(spec: dict, loc: tuple) -> None:
    for key in spec:
        if key not in FIELD_KEYS:
            raise TreeError(loc + (key,), f"unknown key (a field has: {', '.join(FIELD_KEYS)})")
    _check_value(spec["value"], loc + ("value",))
    if spec.get("units") is not None:
        try:
            check_units(spec["units"]) if isinstance(spec["units"], str) else None
        except ValueError as exc:
            raise TreeError(loc + ("units",), str(exc)) from None
        if not isinstance(spec["units"], str):
            raise TreeError(loc + ("units",), f"expected text like 'keV', got {spec['units']!r}")


def check(tree: dict, loc: tuple, nx_class: str) -> None:
    """Raise TreeError at the first key that is not a valid NeXus item of ``nx_class``."""
    for key, value in tree.items():
        here = loc + (key,)
        if key == "NX_class":
            continue
        if nx_class == "NXinstrument" and key in _INSTRUMENT_KEYS:
            if not isinstance(value, str):
                raise TreeError(here, f"expected text, got {value!r}")
            continue
        if not isinstance(key, str) or not NAME_RE.match(key):
            raise TreeError(here, f"{key!r} is not a NeXus name (letters, digits and _ only)")
        if not isinstance(value, dict):
            _check_value(value, here)
        elif "NX_class" in value:
            try:
                check_class(value["NX_class"], ALLOWED_GROUPS.get(nx_class))
            except ValueError as exc:
                raise TreeError(here + ("NX_class",), str(exc)) from None
            check(value, here, value["NX_class"])
        elif "value" in value:
            _check_field(value, here)
        else:
            raise TreeError(here, "a mapping must be a group (give NX_class, e.g. NXslit) "
                                  "or a field (give value and units)")


def to_nxdict(tree: dict, nx_class: str) -> dict:
    """The silx NeXus-dict form (``@NX_class``, ``name@units``) of a checked tree."""
    out: dict = {"@NX_class": tree.get("NX_class", nx_class)}
    for key, value in tree.items():
        if key == "NX_class" or (nx_class == "NXinstrument" and key == "short_name"):
            continue
        if isinstance(value, dict) and "NX_class" in value:
            out[key] = to_nxdict(value, value["NX_class"])
        elif isinstance(value, dict):
            out[key] = value["value"]
            for attr in FIELD_KEYS[1:]:
                if value.get(attr) is not None:
                    out[f"{key}@{attr}"] = value[attr]
        else:
            out[key] = value
    if nx_class == "NXinstrument" and tree.get("short_name") and "name" in out:
        out["name@short_name"] = tree["short_name"]
    return out
