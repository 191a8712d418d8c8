"""Self-check of tests/nxvalidation.py: tiny valid and broken NeXus files."""

import logging

import h5py
import numpy as np
import pytest

from nxvalidation import nexus_errors, nexus_report


def _group(parent, name, nxclass):
    group = parent.create_group(name)
    group.attrs["NX_class"] = nxclass
    return group


def _write(path, mutate=None):
    """Minimal valid NeXus file with entry "1.1". `mutate(entry)` breaks it."""
    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "1.1"
        entry = _group(f, "1.1", "NXentry")
        entry.attrs["default"] = "plotselect"
        entry["title"] = "ascan samx 0 1 4 0.1"
        entry["start_time"] = "2024-01-01T12:00:00+01:00"
        data = _group(entry, "plotselect", "NXdata")
        data.attrs["signal"] = "diode"
        data["diode"] = np.arange(5, dtype=float)
        if mutate is not None:
            mutate(entry)
    return str(path)


def test_clean_file_has_no_errors(tmp_path):
    path = _write(tmp_path / "clean.h5")
    assert nexus_errors(path) == []
    # nexusformat warns about the missing (optional) @axes: a warning only
    assert nexus_report(path)["errors"] == []


def test_dotted_entry_name_needs_the_name_rule_override(tmp_path):
    from nexusformat.nexus.utils import is_valid_name

    assert not is_valid_name("1.1")  # nexusformat's default rule rejects it
    _write(tmp_path / "clean.h5")
    nexus_errors(str(tmp_path / "clean.h5"))
    assert not is_valid_name("1.1")  # the patch is undone afterwards


def _missing_signal_dataset(entry):
    entry["plotselect"].attrs["signal"] = "nope"


def _no_signal_attribute(entry):
    del entry["plotselect"].attrs["signal"]


def _missing_axis(entry):
    entry["plotselect"].attrs["axes"] = ["nope"]


def _bad_start_time(entry):
    del entry["start_time"]
    entry["start_time"] = "yesterday"


def _link_without_target(entry):
    entry["plotselect/samx"] = np.arange(5, dtype=float)
    positioners = _group(_group(entry, "instrument", "NXinstrument"), "positioners", "NXcollection")
    positioners["samx"] = h5py.SoftLink("/1.1/plotselect/samx")


def _broken_link(entry):
    entry["plotselect/samx"] = h5py.SoftLink("/nowhere")


def _invalid_name(entry):
    entry["bad name"] = 1.0


def _missing_units(entry):
    _group(entry, "sample", "NXsample")["temperature"] = 300.0


def _note_data_as_str(entry):
    note = _group(entry, "notes", "NXnote")
    note["data"] = "hello"  # NXnote/data is NX_BINARY


@pytest.mark.parametrize(
    "mutate, tool, expected",
    [
        (_no_signal_attribute, "nexusformat", '"@signal" is not present'),
        (_missing_axis, "nexusformat", 'Axis "nope" is not present'),
        (_invalid_name, "nexusformat", '"bad name" is an invalid name'),
        (_missing_signal_dataset, "pynxtools", "Missing data for signal in /1.1/plotselect/nope"),
        (_bad_start_time, "pynxtools", "/1.1/start_time = yesterday"),
        (_link_without_target, "pynxtools", "no '@target' attribute"),
        (_broken_link, "pynxtools", "Broken link at /1.1/plotselect/samx to /nowhere"),
        (_missing_units, "pynxtools", "/1.1/sample/temperature requires a unit"),
        (_note_data_as_str, "pynxtools", "/1.1/notes/data"),
    ],
)
def test_broken_file_is_reported(tmp_path, mutate, tool, expected):
    errors = nexus_errors(_write(tmp_path / "broken.h5", mutate))
    assert any(e.startswith(f"{tool}: ") and expected in e for e in errors), errors


def test_nexusformat_errors_carry_the_item_path(tmp_path):
    errors = nexus_errors(_write(tmp_path / "broken.h5", _invalid_name))
    assert 'nexusformat: /1.1/bad name: "bad name" is an invalid name' in errors


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (_missing_signal_dataset, 'Signal "nope" is not present'),
        (_bad_start_time, "not a valid NX_DATE_TIME"),
    ],
)
def test_nexusformat_warnings_are_not_errors(tmp_path, mutate, expected):
    report = nexus_report(_write(tmp_path / "broken.h5", mutate))
    assert any(expected in w for w in report["warnings"]), report
    assert not any(expected in e for e in report["errors"]), report


def test_logger_state_is_restored(tmp_path):
    import nexusformat.nexus.validate  # noqa: F401  (importing adds handlers)
    import pynxtools.dataconverter.validation  # noqa: F401

    loggers = [logging.getLogger(name) for name in ("NXValidate", "pynxtools")]
    before = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    nexus_errors(_write(tmp_path / "broken.h5", _invalid_name))
    assert [(lg.handlers, lg.level, lg.propagate) for lg in loggers] == before


def _esrf_notes(entry, where="notes"):
    notes = _group(entry, where, "NXnote")
    note = _group(notes, "note_01", "NXnote")
    note["data"] = "first comment"  # text, where ESRF's writer puts a comment
    note["type"] = "text/plain"
    note["date"] = "2024-01-01T12:00:00+01:00"


def test_esrf_comment_text_is_accepted_only_in_entry_notes(tmp_path):
    """The one NX_BINARY finding dropped (doc/layout.md): a comment's text in
    <entry>/notes/note_NN/data; the same text in another note is still an error."""
    assert nexus_errors(_write(tmp_path / "esrf.h5", _esrf_notes)) == []
    errors = nexus_errors(_write(tmp_path / "other.h5", lambda e: _esrf_notes(_group(e, "sample", "NXsample"))))
    assert [e for e in errors if "NX_BINARY" in e] == [
        "pynxtools: The value at /1.1/sample/notes/note_01/data should be one of the following Python types: "
        "(<class 'bytes'>, <class 'bytearray'>, <class 'numpy.bytes_'>), as defined in the NXDL as NX_BINARY."
    ]
