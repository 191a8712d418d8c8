"""Which file a scan goes to, and which names and paths the writer refuses.

Everything here comes from Redis (scan identity, scan info) or from a user (the
template, session names): a writer that may run as root must never let it name a
file outside the folders it was given, nor a relative path (that would follow the
writer's working directory), nor a path that the C library would cut at a NUL.
"""

from __future__ import annotations

import os
import re
import string
from datetime import datetime

from ..descriptions import ScanDescription
from ..io.path_policy import is_under

#: fields of ``--default-path-template``
TEMPLATE_FIELDS = ("base_path", "session", "scan_name", "scan_number", "date", "user")

#: BLISS session names are short identifiers; they become Redis keys (``:`` separated),
#: file and folder names: no ``/``, no ``:``, no leading dot, no whitespace
_SESSION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


class PathRefused(ValueError):
    """A scan's target path is not one the writer may write (the scan is FAILED)."""


def check_session_name(name: str) -> str:
    """``name`` if it can be a BLISS session name; ValueError with the reason otherwise."""
    if not isinstance(name, str) or not _SESSION_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid session name {name!r}: use letters, digits, '_', '-' and '.' "
                         f"(no '/', ':', spaces; at most 100 characters)")
    return name


def check_template(template: str, base_path: str) -> str:
    """Refuse, at start, a template that would fail or escape for every scan.

    Unknown fields (``{nope}``), attribute or index access (``{session.x}``), and a
    template whose files do not land under ``base_path`` are errors.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"default path template {template!r}: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"default path template {template!r}: unknown field {{{name}}} "
                             f"(fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
        if conversion or (spec and name != "scan_number"):
            raise ValueError(f"default path template {template!r}: no conversion or format "
                             f"for {{{name}}}")
    sample = dict(base_path=base_path, session="session", scan_name="scan", scan_number=1,
                  date="20000101", user="user")
    try:
        path = template.format(**sample)
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"default path template {template!r}: {exc}") from None
    if not os.path.isabs(path):
        raise ValueError(f"default path template {template!r} gives a relative path ({path})")
    if not is_under(os.path.normpath(path), base_path):
        raise ValueError(f"default path template {template!r} gives files outside the base "
                         f"path {base_path} ({os.path.normpath(path)})")
    return template


def safe_field(value) -> str:
    """A template field that cannot leave its folder: no ``/``, no ``..``, no NUL."""
    text = str(value)
    if "\0" in text:
        raise PathRefused(f"a NUL character in {text!r}: no file is named from it")
    text = text.replace("/", "_").replace("\\", "_")
    while ".." in text:
        text = text.replace("..", "_")
    return "_" if text == "." else text


def target_file(desc: ScanDescription, base_path: str, template: str) -> tuple[str, bool]:
    """(absolute file path, whether it came from the default template).

    BLISS names the file when its writer is 'external' (identity path, or the
    ``filename`` in scan info). With writer 'null' nothing is named and the
    template decides; the session-side metadata generators can publish a name.
    A named path must be absolute and free of NUL; a templated one stays under
    ``base_path`` (the allowed roots are checked when the file is opened,
    ``io.files.FileRegistry``).
    """
    for candidate in (desc.path, desc.info.get("filename"),
                      (desc.info.get("nexuswriter") or {}).get("filename")):
        if isinstance(candidate, str) and candidate:
            return checked_path(candidate), False
    fields = {
        "base_path": base_path,
        "session": safe_field(desc.session or "session"),
        "scan_name": safe_field(desc.name),
        "scan_number": desc.number,
        "date": datetime.now().strftime("%Y%m%d"),
        "user": safe_field(desc.info.get("user_name", "")),
    }
    path = checked_path(template.format(**fields))
    if not is_under(path, os.path.normpath(os.path.abspath(base_path))):
        raise PathRefused(f"the default path template gives {path!r}, outside the base path {base_path!r}")
    return path, True


def scan_file(info: dict, dataset_file: str) -> str | None:
    """Where the scan's own entries go when BLISS asks for separate scan files (its
    ``writer_options.separate_scan_files``), None otherwise (the dataset file).

    As ESRF's writer places it: ``bliss_master.h5`` (the dataset file's extension) in the
    scan's folder, i.e. the folders of ``images_path`` below the dataset file's folder up to
    the first one still holding a ``{field}``; the dataset file links each entry there.
    """
    options = info.get("writer_options")
    images_path = info.get("images_path")
    if not (isinstance(options, dict) and options.get("separate_scan_files")):
        return None
    if not isinstance(images_path, str) or not images_path:
        return None
    root = os.path.dirname(dataset_file)
    parts = []
    for part in os.path.relpath(checked_path(images_path), root).split(os.sep):
        if "{" in part:
            break
        if part in ("..", "."):  # the scan folder stays below the dataset's
            return None
        if part:
            parts.append(part)
    ext = os.path.splitext(dataset_file)[1] or ".h5"
    return os.path.join(root, *parts, "bliss_master" + ext)


def checked_path(path: str) -> str:
    """``path`` normalised; PathRefused if it is relative or holds a NUL."""
    if "\0" in path:
        raise PathRefused(f"the file path {path!r} holds a NUL character: nothing written")
    if not os.path.isabs(path):
        raise PathRefused(f"the file path {path!r} is relative: refused (it would depend on the "
                          f"writer's working directory)")
    return os.path.normpath(path)
