"""scan_info as the mapping may trust it: types checked once, at the door.

scan_info is free JSON that users extend (``scan_info={...}``, scan_meta). What
the mapping reads is checked here against blissdata's own description
(``blissdata.schemas.scan_info``: chains, channels, devices) and simple types for
the rest; anything else is dropped with a warning naming the key, so a scan
with a broken part of its info is still written with everything else.
"""

from __future__ import annotations

from functools import lru_cache
from numbers import Number

from pydantic import TypeAdapter, ValidationError

from ..scaninfo_schema import ChainDict, ChannelDict

_STRINGS = ("title", "start_time", "end_time", "end_reason", "type", "filename", "name", "user_name")
_INTS = ("npoints", "npoints1", "npoints2", "data_dim", "scan_nb")
_DICTS = ("positioners", "nexuswriter", "instrument", "display_extra")


@lru_cache(maxsize=None)
def _adapters() -> dict:
    # blissdata's DeviceDict mentions numpy arrays, which pydantic cannot validate
    # without a config a foreign TypedDict cannot take: devices are checked by _device_ok
    return {"acquisition_chain": TypeAdapter(ChainDict), "channels": TypeAdapter(ChannelDict)}


def _device_ok(item) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("name", ""), str)
            and isinstance(item.get("channels", []), list)
            and all(isinstance(c, str) for c in item.get("channels", []))
            and isinstance(item.get("metadata", {}), dict) and isinstance(item.get("type", ""), str))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def clean(info) -> tuple[dict, list[str]]:
    """(info with every key the mapping reads of the right type, warnings)."""
    warnings: list[str] = []
    if not isinstance(info, dict):
        return {}, [f"scan_info is a {type(info).__name__}, not a mapping: ignored"]
    out = dict(info)

    def drop(key, why):
        out.pop(key, None)
        warnings.append(f"scan_info[{key!r}] {why}: ignored")

    for key, adapter in _adapters().items():
        section = out.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            drop(key, f"is a {type(section).__name__}, not a mapping")
            continue
        kept = {}
        for name, item in section.items():
            if key == "acquisition_chain" and isinstance(item, dict):
                # a BLISS Sequence without custom channels publishes its chain without them
                item = {"scalars": [], "spectra": [], "images": [], **item}
            try:
                adapter.validate_python(item)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err.get("loc", ()))
                warnings.append(f"scan_info[{key!r}][{name!r}] is not valid ({where}: {err.get('msg')}): ignored")
                continue
            kept[name] = item
        out[key] = kept
    devices = out.get("devices")
    if devices is not None:
        if not isinstance(devices, dict):
            drop("devices", "is not a mapping")
        else:
            bad = [k for k, v in devices.items() if not _device_ok(v)]
            warnings += [f"scan_info['devices'][{k!r}] is not valid: ignored" for k in bad]
            out["devices"] = {k: v for k, v in devices.items() if k not in bad}
    for key in _STRINGS:
        if key in out and out[key] is not None and not isinstance(out[key], str):
            drop(key, "is not a string")
    for key in _INTS:
        if key in out and out[key] is not None and not _is_int(out[key]):
            drop(key, "is not an integer")
    if "count_time" in out and not (isinstance(out["count_time"], Number) and not isinstance(out["count_time"], bool)):
        drop("count_time", "is not a number")
    if "save" in out and not isinstance(out["save"], bool):
        drop("save", "is not true/false")
    for key in _DICTS:
        if key in out and not isinstance(out[key], dict):
            drop(key, "is not a mapping")
    pos = out.get("positioners")
    if isinstance(pos, dict):
        for sub, values in list(pos.items()):
            if not isinstance(values, dict):
                pos = {k: v for k, v in pos.items() if k != sub}
                warnings.append(f"scan_info['positioners'][{sub!r}] is not a mapping: ignored")
        out["positioners"] = pos
    for key in ("plots", "comments"):
        if key in out:
            if not isinstance(out[key], list):
                drop(key, "is not a list")
            else:
                out[key] = [x for x in out[key] if isinstance(x, dict)]
    cats = out.get("scan_meta_categories")
    if cats is not None:
        if not isinstance(cats, list):
            drop("scan_meta_categories", "is not a list")
        else:
            out["scan_meta_categories"] = [c for c in cats if isinstance(c, str)]
    return out, warnings
