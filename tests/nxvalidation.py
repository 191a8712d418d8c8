"""Run two independent NeXus validators on an HDF5 file (test helper).

The validators catch different problems:

* ``nexusformat.nexus.validate.validate_file`` checks the tree against the
  base classes: item names, NX_class values, NXdata ``@signal``/``@axes``.
  It ignores soft links (broken links and missing ``@target`` are not
  reported) and reports most type problems only as warnings.
* ``pynxtools.dataconverter.validation.validate_hdf_group_against`` checks
  each NXentry against ``NXroot``: field types, ISO8601 datetimes with a
  time zone, units, soft links (broken, no ``@target``, wrong ``@target``).
  It does not check item names and ignores a missing ``@signal``.

Neither validator returns its findings. Both send them to a logger, so the
findings are collected by swapping in a handler for the duration of the call.
"""

import contextlib
import logging
import re
from unittest import mock

#: NeXus name rule extended with "." so that entry names like "1.1"
#: ("<scan number>.<subscan>") are valid (the nexusformat default rejects them).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_]([a-zA-Z0-9_.]*[a-zA-Z0-9_])?$")

# nexusformat writes section headers ("NXdata: /1.1/plotselect",
# "Field: /1.1/title") at CRITICAL level. Each finding is written after them,
# one indent level (4 spaces) deeper.
_HEADER = re.compile(r"^(\S+): (/.*)$")


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.NOTSET)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def _capture(logger_name: str, level: int):
    """Send every record from `logger_name` to a list, and stop it reaching
    stdout or stderr. The logger's state is restored afterwards."""
    logger = logging.getLogger(logger_name)
    saved = logger.handlers[:], logger.level, logger.propagate
    handler = _ListHandler()
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield handler.records
    finally:
        logger.handlers, _, logger.propagate = saved
        logger.setLevel(saved[1])


#: groups an application definition requires whose base class nexusformat 2.1 does not know:
#: NXxas (pynxtools 0.16, FAIRmat contribution) wants entry/element (NXelement) and entry/edge
#: (NXabsorption_edge), contributed base classes absent from nexusformat's definitions. They
#: are excepted only there, below a group declaring that definition; pynxtools validates them.
DEFINITION_ONLY_CLASSES = {"NXxas": {"NXelement", "NXabsorption_edge"}}


def _required_by_definition(path: str, where: str, message: str) -> bool:
    import h5py

    match = re.match(r"^(NX\w+) is not a valid base class$", message)
    if not match:
        return False
    with h5py.File(path, "r", locking=False) as f:
        parent = f.get(where.rsplit("/", 1)[0] or "/")
        definition = parent.get("definition") if isinstance(parent, h5py.Group) else None
        if not isinstance(definition, h5py.Dataset):
            return False
        name = definition[()].decode() if isinstance(definition[()], bytes) else str(definition[()])
    return match.group(1) in DEFINITION_ONLY_CLASSES.get(name, ())


def nexusformat_report(path: str) -> dict:
    """Findings of nexusformat's ``validate_file``, as "<path>: <message>".

    ``is_valid_name`` reads the module global ``nexusformat.nexus.utils.name_pattern``
    each time it is called, so patching that global replaces the name rule.
    The logger level must be exactly WARNING: ``Validator.output_log`` then
    drops INFO messages but keeps both warnings and errors.
    """
    from nexusformat.nexus import utils, validate

    with mock.patch.object(utils, "name_pattern", NAME_PATTERN), _capture(
        "NXValidate", logging.WARNING
    ) as records:
        validate.validate_file(str(path))
    report = {"errors": [], "warnings": []}
    context = {}  # indent level -> path of the section header at that level
    for record in records:
        message = record.getMessage()
        text = message.lstrip(" ")
        indent = (len(message) - len(text)) // 4
        if record.levelno >= logging.CRITICAL:
            header = _HEADER.match(text)
            if header:
                context[indent] = header.group(2)
            continue
        where = context.get(indent - 1)
        text = f"{where}: {text}" if where else text
        if where and _required_by_definition(path, where, message.lstrip(" ")):
            continue
        if record.levelno >= logging.ERROR:
            report["errors"].append(text)
        elif record.levelno >= logging.WARNING:
            report["warnings"].append(text)
    return report


def pynxtools_report(path: str) -> dict:
    """Findings of pynxtools' ``validate_hdf_group_against("NXroot", entry, ...)``.

    The function runs once for each top-level NXentry, with
    ``ignore_undocumented=True``. Every problem that makes the function
    return False counts as an error. pynxtools logs most of these problems
    at WARNING level. INFO messages (for example, undocumented units) do not
    make validation fail, so they are ignored.
    """
    import h5py
    from pynxtools.dataconverter.validation import validate_hdf_group_against

    errors = []
    with h5py.File(path, "r") as f:
        for name in f:
            entry = f.get(name)  # None for a dangling link
            if not isinstance(entry, h5py.Group):
                continue
            nxclass = entry.attrs.get("NX_class")
            if isinstance(nxclass, bytes):
                nxclass = nxclass.decode()
            if nxclass != "NXentry":
                continue
            with _capture("pynxtools", logging.INFO) as records:
                valid = validate_hdf_group_against(
                    "NXroot", entry, str(path), ignore_undocumented=True
                )
            found = [
                r.getMessage() for r in records if r.levelno >= logging.WARNING
            ]
            if not valid and not found:
                found = [f"{entry.name}: invalid (pynxtools gave no message)"]
            errors.extend(found)
    return {"errors": errors, "warnings": []}


def nexus_report(path: str) -> dict:
    """Findings of both validators, each prefixed with the validator's name."""
    import contextlib
    import os

    report = {"errors": [], "warnings": []}
    path = os.path.abspath(path)
    # from the file's folder, as a user opens it: pynxtools resolves relative external
    # links (a Lima2 master beside the file) against the working directory
    with contextlib.chdir(os.path.dirname(path)):
        for tool, func in (("nexusformat", nexusformat_report), ("pynxtools", pynxtools_report)):
            for kind, messages in func(path).items():
                report[kind].extend(f"{tool}: {m}" for m in messages
                                    if not (tool == "pynxtools" and (_resolving_external_link(path, m)
                                                                     or _esrf_note_text(m))))
    return report


_ESRF_NOTE = re.compile(r"^The value at /[^/]+/notes/note_\d{2,}/data should be one of the following "
                        r"Python types: .* as defined in the NXDL as NX_BINARY\.$")


def _esrf_note_text(message: str) -> bool:
    """A comment's text in ``<entry>/notes/note_NN/data``, where ESRF's writer puts it and
    its readers look (NeXus wants NXnote/data binary): our choice, doc/layout.md. Exactly
    that place; text in any other NXnote's ``data`` is still an error."""
    return bool(_ESRF_NOTE.match(message))


def _resolving_external_link(path: str, message: str) -> bool:
    """pynxtools 0.16 reports external links to a dataset of another file as broken
    ("Broken link at X to Y") even when HDF5 follows them: drop exactly those whose
    link is external and resolves (a Lima2 master file's frames)."""
    import re

    import h5py

    m = re.match(r"Broken link at (\S+) to (\S+)\.$", message)
    if not m:
        return False
    with h5py.File(path, "r", locking=False) as f:
        parent, _, name = m.group(1).rpartition("/")
        grp = f.get(parent or "/")
        link = grp.get(name, getlink=True) if isinstance(grp, h5py.Group) else None
        return isinstance(link, h5py.ExternalLink) and grp.get(name) is not None


def nexus_errors(path: str) -> list[str]:
    """Errors from both validators. An empty list means the file is valid.
    Warnings are not included."""
    return nexus_report(path)["errors"]


def empty_groups(path: str, allowed: dict[str, str] | None = None) -> list[str]:
    """Paths of the groups without any member in the file at ``path``.

    A scientist opening the file meets an empty group as a dead end ("technique/" with
    nothing in it), so the writer writes a group when it has content, or not at all.
    ``allowed`` maps a path (or a name, matching any group of that name) to the reason
    NeXus wants that group even when empty; those are not reported. Groups reached
    through links are checked where they are, once.
    """
    import h5py

    allowed = allowed or {}
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and len(obj) == 0:
            where = "/" + name
            if where not in allowed and name.rsplit("/", 1)[-1] not in allowed:
                found.append(where)

    with h5py.File(path, "r", locking=False) as f:
        f.visititems(visit)
    return found


def appdef_errors(path: str, group: str, appdef: str) -> list[str]:
    """pynxtools' findings for ``group`` (an NXentry or NXsubentry) validated AGAINST the
    application definition ``appdef`` (every required field, type, unit and enumeration),
    with the same rule as ``pynxtools_report``: every problem counts."""
    import h5py
    from pynxtools.dataconverter.validation import validate_hdf_group_against

    with h5py.File(path, "r") as f:  # pynxtools opens it again: the same locking flags
        with _capture("pynxtools", logging.INFO) as records:
            valid = validate_hdf_group_against(appdef, f[group], str(path), ignore_undocumented=True)
    found = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    if not valid and not found:
        found = [f"{group}: invalid against {appdef} (pynxtools gave no message)"]
    return found
