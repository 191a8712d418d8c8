"""Scans BLISS can publish but that were not recorded, built from recorded ones.

A multi-top-master scan has several independent acquisition chains in one scan
(``acquisition_chain`` with several keys); each becomes its own entry N.1, N.2.
"""

from __future__ import annotations

import numpy as np

from .recording import ScanRecording, StreamRecording, load_recording

_DIODE2 = "simulation_diode_sampling_controller:diode2"


def multi_top_master(npoints2: int = 8) -> ScanRecording:
    """An ascan (robx, diode1) plus a second top master ``fast_timer`` counting diode2.

    The second chain runs at its own pace (``npoints2`` points) as a second
    timer would; its streams are announced at ``<N>.2/...`` like BLISS does.
    """
    rec = load_recording("03_ascan")
    n = rec.number
    for info in (rec.info_created, rec.info_prepared, rec.info_final):
        chain1 = info["acquisition_chain"]["axis"]
        chain1["scalars"] = [c for c in chain1["scalars"] if c != _DIODE2]
        diode2_dev = info["channels"][_DIODE2]["device"]
        chain1["devices"] = [d for d in chain1["devices"] if d != diode2_dev]
        timer_dev = "1:fast_timer"
        info["acquisition_chain"]["fast_timer"] = {
            "master": {"scalars": ["fast_timer:elapsed_time", "fast_timer:epoch"], "spectra": [], "images": []},
            "scalars": [_DIODE2], "spectra": [], "images": [],
            "top_master": timer_dev, "devices": [timer_dev, diode2_dev],
        }
        info["devices"][timer_dev] = {
            "name": "fast_timer", "triggered_devices": [diode2_dev],
            "channels": ["fast_timer:elapsed_time", "fast_timer:epoch"],
        }
        for ch in ("elapsed_time", "epoch"):
            info["channels"][f"fast_timer:{ch}"] = {"device": timer_dev, "display_name": ch, "dim": 0, "unit": "s"}
    template = rec.stream("timer:elapsed_time")
    path = template.info.get("file_path")
    for ch in ("elapsed_time", "epoch"):
        sinfo = dict(template.info)
        if path:
            sinfo["data_path"] = f"{n}.2/instrument/{ch}/value"
        data = np.arange(npoints2, dtype=float) * 0.005 + (1.8e9 if ch == "epoch" else 0.0)
        rec.streams.append(StreamRecording(f"fast_timer:{ch}", sinfo, dict(template.encoding), data))
    diode2 = rec.stream(_DIODE2)
    if "data_path" in diode2.info:
        diode2.info["data_path"] = f"{n}.2/instrument/diode2/signal"
    diode2.data = np.linspace(10.0, 20.0, npoints2)
    rec.label = "multi_top_master"
    return rec
