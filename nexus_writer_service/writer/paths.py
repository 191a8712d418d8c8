"""Which file a scan goes to."""

from __future__ import annotations

import os
from datetime import datetime

from ..mapping.description import ScanDescription


def target_file(desc: ScanDescription, base_path: str, template: str) -> tuple[str, bool]:
    """(absolute file path, whether it came from the default template).

    BLISS names the file when its writer is 'external' (identity path, or the
    ``filename`` in scan info). With writer 'null' nothing is named and the
    template decides; the session-side metadata generators can publish a name.
    """
    for candidate in (desc.path, desc.info.get("filename"),
                      (desc.info.get("nexuswriter") or {}).get("filename")):
        if isinstance(candidate, str) and candidate:
            return os.path.abspath(candidate), False
    fields = {
        "base_path": base_path,
        "session": desc.session or "session",
        "scan_name": desc.name,
        "scan_number": desc.number,
        "date": datetime.now().strftime("%Y%m%d"),
        "user": desc.info.get("user_name", ""),
    }
    return os.path.abspath(template.format(**fields)), True
