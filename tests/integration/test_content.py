"""What a scientist sees in the entry: no empty groups, BLISS's metadata kept."""

from __future__ import annotations


from nexus_writer_service.mapping.metadata import nxdict_to_group, user_categories
from nexus_writer_service.nxnodes import get
from nexus_writer_service.metadata.config import loads
from test_beamline_config import _trees, _value


def test_groups_without_content_are_not_written():
    # BLISS's default categories are a class and nothing else; a None value is dropped
    info = {"scan_meta_categories": ["technique", "sample", "instrument"],
            "technique": {"@NX_class": "NXcollection"},
            "sample": {"@NX_class": "NXsample", "name": "S1", "holder": {"@NX_class": "NXsample_component",
                                                                        "name": None}}}
    groups = user_categories(info)
    assert list(groups) == ["sample"]
    assert list(groups["sample"].children) == ["name"]
    assert nxdict_to_group({"a": {"b": {"@NX_class": "NXnote"}}}).children == {}


def test_a_configured_group_given_only_its_class_is_not_written():
    cfg = loads("instrument:\n  name: X\n  monochromator:\n    NX_class: NXmonochromator\n"
                "    crystal:\n      NX_class: NXcrystal\nsample:\n  environment:\n    NX_class: NXenvironment\n")
    _, _, final, _ = _trees("03_ascan", cfg)
    inst = final.children["instrument"]
    assert "monochromator" not in inst.children  # its only member was an empty crystal
    assert _value(get(inst, "name")) == "X"
    assert "sample" not in final.children
    assert "technique" not in final.children
