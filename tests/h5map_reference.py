"""BLISS 2.4-style ``h5maps`` for the recorded scans, made from ESRF's writer 2.0 layout of
the same scans (the reference layout): BLISS 2.4 builds its map from that layout (see
/work/shared TODAY_BLISS §5), and no BLISS 2.4 ran here to record one."""

from __future__ import annotations

import json

from nexus_writer_service.simulation.recording import FIXTURE_DIR

#: numeric dtypes h5map's Inline takes as they are
_INLINE = {"float64", "float32", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool"}


def reference_layout(fixture: str) -> tuple[str, dict] | tuple[None, None]:
    """(entry name, {entry path: item}) of ESRF's writer for ``fixture``."""
    ref = json.loads((FIXTURE_DIR / "reference_blisswriter_2.0.0_h5_layout.json").read_text())
    for entries in (f["entries"] for f in ref["files"].values()):
        for name, layout in entries.items():
            if layout["fixture"] == f"{fixture}.json":
                return name, layout["layout"]
    return None, None


def _value(item: dict):
    value = item["value"]
    if item["dtype"] in _INLINE:
        return {"type": "inline", "dtype": item["dtype"], "value": value}
    return value


def group(**attrs) -> dict:
    return {"type": "group", "attributes": attrs, "children": {}}


def dataset(value, **attrs) -> dict:
    return {"type": "dataset", "attributes": attrs, "value": value}


def entry_map(rec, fixture: str, final: bool) -> dict | None:
    """The file's map (JSON, as in scan_info) as BLISS would send it: every item of ESRF's layout with a value,
    each published stream where ESRF wrote it (its ``data_path``); at PREPARING without
    ``end_time``/``end_reason``; never ESRF's writer's own ``writer`` note (a writer's)."""
    name, layout = reference_layout(fixture)
    if layout is None:
        return None
    entry = f"{rec.number}.1"
    streams = {s.info["data_path"].split("/", 1)[1]: s.name for s in rec.streams if s.info.get("data_path")}
    root = group()
    for path, item in layout.items():
        rel = path.strip("/")
        if rel.split("/")[0] == "writer" or (not final and rel in ("end_time", "end_reason")):
            continue
        attrs = dict(item.get("attrs", {}))
        if path.endswith("/"):
            node = group(**attrs)
            if not rel:
                root["children"][entry] = node
                continue
        elif "link" in item:
            node = {"type": "soft_link", "target_path": item["link"].replace(f"/{name}/", f"/{entry}/")}
        elif rel in streams:
            node = dataset({"type": "stream", "stream": streams[rel]}, **attrs)
        elif "value" in item:
            node = dataset(_value(item), **attrs)
        else:
            continue  # a large static dataset (none in these scans but streams)
        put(root["children"][entry], rel, node)
    # BLISS makes its map from scan_info: its times, not those ESRF's writer took
    info = rec.info_final if final else rec.info_prepared
    for key in ("start_time", "end_time"):
        if key in root["children"][entry]["children"]:
            root["children"][entry]["children"][key] = info[key]
    return root


def put(parent: dict, rel: str, node: dict) -> None:
    *parents, last = rel.rstrip("/").split("/")
    for part in parents:
        parent = parent["children"].setdefault(part, group())
    before = parent["children"].get(last)
    if node["type"] == "group" and before is not None and before["type"] == "group":
        before["attributes"].update(node["attributes"])
    else:
        parent["children"][last] = node
