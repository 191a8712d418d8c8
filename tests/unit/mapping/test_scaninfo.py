"""scan_info as the mapping may trust it (``mapping/scaninfo.py``): each key of the wrong
type is dropped with a warning naming it, everything else kept as it was."""

from __future__ import annotations

import pytest

from nexus_writer_service.mapping.scaninfo import clean

CHAIN = {"top_master": "timer", "devices": ["timer"], "scalars": ["timer:epoch"], "spectra": [], "images": [],
         "master": {"scalars": ["timer:elapsed_time"], "spectra": [], "images": []}}
GOOD = {
    "title": "ascan m1 0 1 10 0.1", "type": "ascan", "npoints": 10, "count_time": 0.1, "save": True,
    "start_time": "2026-12-07T21:00:00+01:00", "acquisition_chain": {"timer": CHAIN},
    "channels": {"timer:epoch": {"dim": 0, "unit": "s", "display_name": "epoch"}},
    "devices": {"timer": {"name": "timer", "channels": ["timer:epoch"], "metadata": {}, "type": "timer"}},
    "positioners": {"positioners_start": {"m1": 0.0}}, "plots": [{"kind": "curve-plot"}],
    "scan_meta_categories": ["positioners", "instrument"], "user_field": object,
}


def test_a_good_scan_info_is_kept_as_it_is():
    assert clean(GOOD) == (GOOD, [])


@pytest.mark.parametrize("info", [None, [], "text", 3])
def test_not_a_mapping(info):
    assert clean(info) == ({}, [f"scan_info is a {type(info).__name__}, not a mapping: ignored"])


@pytest.mark.parametrize("key, value, why", [
    ("title", 3, "is not a string"),
    ("end_reason", ["SUCCESS"], "is not a string"),
    ("filename", b"/a.h5", "is not a string"),
    ("npoints", "10", "is not an integer"),
    ("npoints", True, "is not an integer"),
    ("scan_nb", 1.0, "is not an integer"),
    ("count_time", "0.1", "is not a number"),
    ("count_time", False, "is not a number"),
    ("save", 1, "is not true/false"),
    ("save", None, "is not true/false"),
    ("positioners", [], "is not a mapping"),
    ("nexuswriter", "x", "is not a mapping"),
    ("instrument", 3, "is not a mapping"),
    ("plots", {}, "is not a list"),
    ("comments", "c", "is not a list"),
    ("scan_meta_categories", "positioners", "is not a list"),
    ("acquisition_chain", [CHAIN], "is a list, not a mapping"),
    ("channels", "x", "is a str, not a mapping"),
    ("devices", [], "is not a mapping"),
])
def test_a_key_of_the_wrong_type_is_dropped(key, value, why):
    info = dict(GOOD, **{key: value})
    expected = {k: v for k, v in GOOD.items() if k != key}
    assert clean(info) == (expected, [f"scan_info[{key!r}] {why}: ignored"])


@pytest.mark.parametrize("key, value", [("title", None), ("npoints", None), ("count_time", 1), ("save", False)])
def test_none_and_other_right_types_are_kept(key, value):
    info = dict(GOOD, **{key: value})
    assert clean(info) == (info, [])


def test_a_chain_without_custom_channels_gets_empty_ones():
    """A BLISS Sequence without custom channels publishes its chain without them."""
    chain = {k: v for k, v in CHAIN.items() if k not in ("scalars", "spectra", "images")}
    info = dict(GOOD, acquisition_chain={"timer": chain})
    completed = dict(chain, scalars=[], spectra=[], images=[])
    assert clean(info) == (dict(GOOD, acquisition_chain={"timer": completed}), [])


def test_bad_parts_of_sections_are_dropped_alone():
    info = dict(GOOD,
                acquisition_chain={"timer": CHAIN, "bad": {"top_master": 3}, "odd": "x"},
                channels={"timer:epoch": {"dim": 0}, "nodim": {"unit": "s"}, "wrong": {"dim": "zero"}},
                devices={"timer": GOOD["devices"]["timer"], "d1": {"channels": "a"}, "d2": [],
                         "d3": {"name": 3}, "d4": {"channels": [1]}, "d5": {"metadata": []}})
    out, warnings = clean(info)
    assert out["acquisition_chain"] == {"timer": CHAIN}
    assert out["channels"] == {"timer:epoch": {"dim": 0}}
    assert out["devices"] == {"timer": GOOD["devices"]["timer"]}
    assert warnings == [
        "scan_info['acquisition_chain']['bad'] is not valid (top_master: Input should be a valid string): ignored",
        "scan_info['acquisition_chain']['odd'] is not valid (: Input should be a valid dictionary): ignored",
        "scan_info['channels']['nodim'] is not valid (dim: Field required): ignored",
        "scan_info['channels']['wrong'] is not valid (dim: Input should be a valid integer, "
        "unable to parse string as an integer): ignored",
    ] + [f"scan_info['devices'][{k!r}] is not valid: ignored" for k in ("d1", "d2", "d3", "d4", "d5")]


def test_positioners_plots_comments_and_categories_keep_their_good_items():
    info = dict(GOOD, positioners={"positioners_start": {"m1": 0.0}, "bad": [1]},
                plots=[{"kind": "curve-plot"}, "x", 3], comments=[{"text": "c"}, None],
                scan_meta_categories=["positioners", 3, None, "instrument"])
    out, warnings = clean(info)
    assert out["positioners"] == {"positioners_start": {"m1": 0.0}}
    assert out["plots"] == [{"kind": "curve-plot"}]
    assert out["comments"] == [{"text": "c"}]
    assert out["scan_meta_categories"] == ["positioners", "instrument"]
    assert warnings == ["scan_info['positioners']['bad'] is not a mapping: ignored"]


def test_the_callers_info_is_not_changed():
    info = dict(GOOD, npoints="x", plots=[1])
    before = dict(info)
    clean(info)
    assert info == before
