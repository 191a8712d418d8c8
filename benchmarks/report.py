"""Medians of the repeats, the table, the ratios, the targets, the JSON file.

A writer whose output missed or changed a point in ANY repeat gets no figure for
that scenario: the table says what it dropped instead.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

FIELDS = ("seconds", "per_scan_ms", "lag_p99_s", "lag_max_s", "catchup_s", "rss_mb", "cpu_s",
          "size_mb", "publish_s", "read_s", "write_s", "write_pub_batch_s")
WRITERS = ("ours", "esrf", "bound")


def summarize(runs: list[dict]) -> dict:
    """{scenario: {writer: {field: median, "ok": bool, "check": str, "repeats": n}}}."""
    out: dict = {}
    for run in runs:
        out.setdefault(run["scenario"], {}).setdefault(run["writer"], []).append(run)
    summary = {}
    for sc, by_writer in out.items():
        summary[sc] = {}
        for writer, rs in by_writer.items():
            bad = [r for r in rs if not r.get("ok")]
            row = {"repeats": len(rs), "ok": not bad,
                   "check": bad[0].get("check", "failed") if bad else "ok"}
            for field in FIELDS:
                values = [r[field] for r in rs if r.get(field) is not None]
                if values and (not bad or field in ("rss_mb", "cpu_s", "size_mb", "publish_s")):
                    row[field] = statistics.median(values)
            summary[sc][writer] = row
    return summary


def _ratio(a, b):
    return a / b if a is not None and b else None


#: scenarios measured against the floor: max(publisher's time, plain uncompressed read + write)
FLOOR_SCENARIOS = ("S2_live", "S2_1000_live")


def floor(rows: dict) -> float | None:
    """max(the publisher's own time, the plain uncompressed bound), same run (medians)."""
    ours, bound = rows.get("ours", {}), rows.get("bound", {})
    if not bound.get("ok") or bound.get("seconds") is None or ours.get("publish_s") is None:
        return None
    return max(ours["publish_s"], bound["seconds"])


def ratios(summary: dict) -> dict:
    out = {}
    for sc, rows in summary.items():
        ours = rows.get("ours", {})
        t = ours.get("seconds") if ours.get("ok") else None
        bound = rows.get("bound", {}).get("seconds") if rows.get("bound", {}).get("ok") else None
        esrf = rows.get("esrf", {}).get("seconds") if rows.get("esrf", {}).get("ok") else None
        if sc == "S3_live":  # the writer's CPU per scan (its wall time is the publisher's)
            per = [rows.get(w, {}).get("per_scan_ms") if rows.get(w, {}).get("ok") else None
                   for w in ("ours", "bound", "esrf")]
            t, bound, esrf = per
        out[sc] = {"ours/bound": _ratio(t, bound), "ours/esrf": _ratio(t, esrf),
                   "rss ours/esrf": _ratio(ours.get("rss_mb"), rows.get("esrf", {}).get("rss_mb"))}
        if sc in FLOOR_SCENARIOS:
            out[sc]["floor s"] = floor(rows)
            out[sc]["ours/floor"] = _ratio(t, floor(rows))
    return out


def targets(summary: dict, nscans: dict) -> list[dict]:
    """The issue's targets, each PASS / FAIL / n/a with the value that decided it."""
    res = []

    def add(name, value, ok, fmt="{:.2f}"):
        status = "n/a" if value is None else ("PASS" if ok else "FAIL")
        res.append({"target": name, "value": value, "status": status,
                    "shown": "-" if value is None else fmt.format(value)})

    def fig(sc, writer, field="seconds"):
        row = summary.get(sc, {}).get(writer, {})
        return row.get(field) if row.get("ok") else None

    for sc in ("S1", "S2", "S2_1", "S2_1000"):
        if sc not in summary:
            continue
        ours, bound, esrf = fig(sc, "ours"), fig(sc, "bound"), fig(sc, "esrf")
        r = _ratio(ours, bound)
        add(f"{sc}: ours <= 1.3 x bound", r, r is not None and r <= 1.3, "{:.2f} x")
        if sc in ("S1", "S2"):
            r = _ratio(esrf, ours)
            add(f"{sc}: ours >= 3 x faster than ESRF", r, r is not None and r >= 3, "{:.1f} x faster")
    for sc in FLOOR_SCENARIOS:  # issue 20 item 2: the portable default keeps up with a live MCA scan
        if sc in summary:
            r = _ratio(fig(sc, "ours"), floor(summary[sc]))
            add(f"{sc}: ours <= 1.3 x floor", r, r is not None and r <= 1.3, "{:.2f} x")
    ours, bound = fig("S3", "ours"), fig("S3", "bound")
    n = nscans.get("S3")
    over = (ours - bound) / n * 1000 if ours is not None and bound is not None and n else None
    add("S3: <= 20 ms writer overhead per scan", over, over is not None and over <= 20, "{:.1f} ms")
    if "S3_live" in summary:
        ours, bound = fig("S3_live", "ours", "per_scan_ms"), fig("S3_live", "bound", "per_scan_ms")
        over = ours - bound if ours is not None and bound is not None else None
        add("S3_live: <= 15 ms writer CPU per scan over bound", over, over is not None and over <= 15,
            "{:.1f} ms")
    for sc in ("S6", "S7"):
        if sc in summary:
            r = _ratio(fig(sc, "ours"), fig(sc, "bound"))
            add(f"{sc}: ours <= 1.5 x bound", r, r is not None and r <= 1.5, "{:.2f} x")
    p99 = fig("S4", "ours", "lag_p99_s")
    add("S4: lag p99 <= 1 s", p99, p99 is not None and p99 <= 1.0, "{:.2f} s")
    rss = [rows["ours"]["rss_mb"] for rows in summary.values() if rows.get("ours", {}).get("rss_mb")]
    peak = max(rss) if rss else None
    add("memory: ours peak RSS < 300 MB (every scenario)", peak, peak is not None and peak < 300, "{:.0f} MB")
    for big, small, what in (("S1", "S1_50k", "S1 200k vs 50k points"), ("S6", "S6_25k", "S6 100k vs 25k frames"),
                             ("S7", "S7_5k", "S7 20k vs 5k points")):
        if big not in summary and small not in summary and big != "S1":
            continue
        a = summary.get(big, {}).get("ours", {}).get("rss_mb")
        b = summary.get(small, {}).get("ours", {}).get("rss_mb")
        d = abs(a - b) / b if a and b else None
        add(f"memory: {what} within 10%", d, d is not None and d <= 0.10, "{:.1%}")
    return res


def _cell(row: dict, field: str, fmt: str) -> str:
    v = row.get(field)
    return "-" if v is None else fmt.format(v)


def table(summary: dict, rat: dict, tgt: list[dict], order: list[str]) -> str:
    head = (f"{'scenario':<12} {'writer':<6} {'time s':>8} {'ms/scan':>8} {'lag p99':>8} {'lag max':>8} "
            f"{'RSS MB':>7} {'CPU s':>7} {'out MB':>8}  data")
    lines = [head, "-" * len(head)]
    for sc in order:
        rows = summary.get(sc)
        if not rows:
            continue
        for writer in WRITERS:
            row = rows.get(writer)
            if row is None:
                continue
            timing = row.get("ok")
            lines.append(
                f"{sc:<12} {writer:<6} "
                f"{_cell(row, 'seconds', '{:8.2f}') if timing else 'n/a':>8} "
                f"{_cell(row, 'per_scan_ms', '{:8.1f}') if timing else '-':>8} "
                f"{_cell(row, 'lag_p99_s', '{:8.2f}') if timing else '-':>8} "
                f"{_cell(row, 'lag_max_s', '{:8.2f}') if timing else '-':>8} "
                f"{_cell(row, 'rss_mb', '{:7.0f}'):>7} {_cell(row, 'cpu_s', '{:7.2f}'):>7} "
                f"{_cell(row, 'size_mb', '{:8.1f}'):>8}  {row['check']}")
        r = rat.get(sc, {})
        parts = [f"{k} {v:.2f}" for k, v in r.items() if v is not None]
        if parts:
            lines.append(f"{'':<12} ratios: " + ", ".join(parts))
    lines.append("")
    lines.append("targets (medians):")
    for t in tgt:
        lines.append(f"  {t['status']:<4}  {t['target']:<48} {t['shown']}")
    return "\n".join(lines)


def save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str))
