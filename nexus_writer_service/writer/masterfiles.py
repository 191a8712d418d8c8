"""ESRF data policy: the collection and proposal master files.

Users find their scans through two files that link every scan entry of every
dataset: ``<proposal>_<collection>.h5`` beside the dataset folders of a
collection, and ``<proposal>_<beamline>.h5`` in ``RAW_DATA``. The links are
external and relative, so the session folder can move as a whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..h5map import ExternalLink

from ..io import retry
from ..io.files import FileRegistry
from ..io.tree import TreeWriter
from ..descriptions import ScanDescription
from ..nxnodes import safe_name


@dataclass(frozen=True)
class MasterLink:
    master: str
    name: str
    target_file: str
    target_entry: str


def is_esrf(desc: ScanDescription) -> bool:
    return bool(desc.proposal and desc.collection and desc.dataset)


def _beamline(desc: ScanDescription, dataset_file: str) -> str:
    parts = dataset_file.split(os.sep)
    if desc.proposal in parts:  # .../<proposal>/<beamline>/<session>/RAW_DATA/...
        i = parts.index(desc.proposal)
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    return str(desc.info.get("beamline") or "beamline")


def master_links(desc: ScanDescription, dataset_file: str, entries: list[str]) -> list[MasterLink]:
    """Where each entry of a data-policy scan is linked from (pure)."""
    if not is_esrf(desc):
        return []
    dataset_dir = os.path.dirname(dataset_file)
    collection_dir = os.path.dirname(dataset_dir)
    raw_dir = os.path.dirname(collection_dir)
    collection_file = os.path.join(collection_dir, f"{desc.proposal}_{desc.collection}.h5")
    proposal_file = os.path.join(raw_dir, f"{desc.proposal}_{_beamline(desc, dataset_file)}.h5")
    links = []
    for entry in entries:
        links.append(MasterLink(collection_file, safe_name(f"{desc.dataset}_{entry}".replace(".", "_")),
                                dataset_file, entry))
        links.append(MasterLink(proposal_file, safe_name(f"{desc.collection}_{desc.dataset}_{entry}".replace(".", "_")),
                                dataset_file, entry))
    return links


def update_master_files(files: FileRegistry, links: list[MasterLink]) -> list[str]:
    """Add the links (never replacing an existing name); returns warnings.

    Master files are shared by every scan of a collection or proposal, so another
    process may be writing one (a writer of another session; HDF5 file locking is often
    off on network file systems): a half-flushed state is read again (``io.retry``).
    Linking is idempotent, so a second try after a transient error adds what is missing.
    """
    warnings = []
    by_master: dict[str, list[MasterLink]] = {}
    for link in links:
        by_master.setdefault(link.master, []).append(link)
    for master, items in by_master.items():
        warnings.extend(retry.call(_link_into, files, master, items))
    return warnings


def _link_into(files: FileRegistry, master: str, items: list[MasterLink]) -> list[str]:
    warnings = []
    handle = files.acquire(master)
    try:
        with handle.lock:
            children = {}
            for link in items:
                rel = os.path.relpath(link.target_file, os.path.dirname(master))
                if link.name in handle.h5:
                    existing = handle.h5.get(link.name, getlink=True)
                    if getattr(existing, "filename", None) != rel:
                        warnings.append(f"{master}: {link.name} exists already, not replaced")
                    continue
                children[link.name] = ExternalLink(target_file=rel, target_path=f"/{link.target_entry}")
            writer = TreeWriter()
            for name, node in children.items():
                writer.write(handle.h5, name, node)
            warnings.extend(writer.warnings)
        handle.flush()
    finally:
        files.release(handle)
    return warnings
