"""Where the writer may write files: one rule for the writer, its salvage and the Tango devices.

A writer that may run as root takes file names from Redis: it must never write
outside the folders it was given, into system or hidden folders, through a relative
path or a NUL, or over something that is not an HDF5 file. BLISS asks the Tango
device before each scan whether the writer may write the scan's file: the device
answers with this same rule (the writer publishes its roots and their strictness
in its heartbeat, ``transport/status.py``), so it never approves a scan that the
writer then FAILS. No h5py here: the devices and the session-side code import it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class PathPolicy:
    """Inside ``roots``: allowed. Elsewhere, with ``strict`` (the operator named the
    roots, ``--allowed-root``): refused; without: allowed except in system and hidden
    folders (files BLISS names under a SCAN_SAVING.base_path the writer is not told)."""

    roots: tuple[str, ...] = ()
    strict: bool = False

    def refusal(self, path: str) -> tuple[int, str] | None:
        """(errno, the words the writer FAILS a scan with) if ``path`` may not be written, else None."""
        if "\0" in path:
            return errno.EINVAL, f"file path {path!r} holds a NUL character: nothing written"
        if not os.path.isabs(path):
            return errno.EINVAL, f"file path {path!r} is relative: refused"
        path = os.path.normpath(path)
        why = path_refused(path, self.roots, self.strict)
        return (errno.EACCES, f"{path!r} {why}: not written") if why else None

    def to_dict(self) -> dict:
        """As the heartbeat carries it (JSON)."""
        return {"allowed_roots": list(self.roots), "strict": self.strict}

    @classmethod
    def from_dict(cls, data) -> "PathPolicy":
        """The policy a writer published (its heartbeat); the default rule when it said none
        (no writer alive, or one from before it was published)."""
        if not isinstance(data, dict):
            return cls()
        roots = data.get("allowed_roots")
        roots = tuple(r for r in roots if isinstance(r, str) and os.path.isabs(r)) if isinstance(roots, list) else ()
        return cls(roots, data.get("strict") is True)


#: folders of the system, never written unless an allowed root names them
SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                  "/root", "/run", "/sbin", "/sys", "/usr", "/var")


def is_under(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or inside it (both absolute; compared as given)."""
    root = os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def path_refused(path: str, roots=(), strict: bool = False) -> str | None:
    """Why the writer must not write ``path`` (absolute, normalised), or None.

    The folder is compared with its symbolic links resolved: a link inside a root
    cannot lead out of it. Inside one of ``roots``: allowed. Elsewhere, with
    ``strict`` (the operator named the roots): refused. Without (the default, for
    files BLISS names under a SCAN_SAVING.base_path the writer is not told): allowed
    except in system folders (/etc, /usr, /root, ...) and hidden folders.
    """
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    real_roots = [os.path.realpath(r) for r in roots]
    if any(is_under(real, r) for r in real_roots):
        return None
    if strict:
        return f"is outside the writer's allowed roots ({', '.join(real_roots)}; see --allowed-root)"
    for folder in SYSTEM_FOLDERS:
        if is_under(real, folder):
            return f"is in a system folder ({folder}; give --allowed-root to write there)"
    if "/." in real:
        return "is in a hidden folder (give --allowed-root to write there)"
    return None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def has_hdf5_signature(path: str) -> bool:
    """The HDF5 format signature at offset 0, 512, 1024, ... (after a user block)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                if f.read(8) == HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def not_an_hdf5_target(path: str) -> str | None:
    """What is at ``path`` when it cannot be an HDF5 file to write, else None (absent or HDF5).

    Said at once, instead of retrying as if another process held a lock: a directory,
    a symbolic link (dangling or not: the writer never writes through one), a device or
    pipe, an empty file, a file of another format.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if not os.path.exists(path):
            return f"is a dangling symbolic link (to {target!r})"
        return f"is a symbolic link (to {target!r}); the writer does not write through links"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device, pipe or socket)"
    if st.st_size == 0:
        return "is an empty file, not HDF5"
    if not has_hdf5_signature(path):
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError:
            head = b""
        return f"is not an HDF5 file (it starts with {head!r})"
    return None
