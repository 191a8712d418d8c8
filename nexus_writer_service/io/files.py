"""Opening target files: shared per process, retried while locked, never truncated.

Several scans write to one file at once (a sequence and its children, or scans
run back to back), so a process opens each file once and shares the handle.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import h5py

from .. import __version__
from . import space
from .objects import new_attr
from .path_policy import HDF5_SIGNATURE, PathPolicy, not_an_hdf5_target

_logger = logging.getLogger(__name__)


class FileAccessError(OSError):
    """The target file cannot be opened for writing (locked, no permission, ...)."""


class FileLocked(FileAccessError):
    """Another process holds HDF5's lock on the file (a viewer opened it): wait, never fail."""

    def __init__(self, path: str, holders: list[str], cause: Exception):
        who = f" by {', '.join(holders)}" if holders else ""
        super().__init__(errno.EAGAIN, f"{path!r} is locked{who} ({cause})")
        self.path = path
        self.holders = holders


class BrokenInProcess(FileAccessError):
    """This process holds a broken HDF5 handle of the file (failed writes): HDF5 would
    hand it to a new open of the same file, so the file must first be moved aside."""


@dataclass(frozen=True)
class FileChange:
    """What happened to the file at a handle's path since the writer opened it."""

    #: deleted, moved, replaced, truncated, overwritten, read-only
    kind: str
    message: str
    #: where the file is now (moved)
    new_path: str | None = None

    @property
    def lost(self) -> bool:
        """The handle's file is no longer what readers find at the path (rewrite it)."""
        return self.kind in ("deleted", "replaced", "truncated", "overwritten", "broken")


class FileChangedError(OSError):
    """The file at the path changed under the writer (``FileChange``): it writes nothing more there."""

    def __init__(self, path: str, change: FileChange):
        super().__init__(errno.ESTALE, f"{path}: {change.message}")
        self.path = path
        self.change = change


class FileHandle:
    def __init__(self, path: str, h5: h5py.File):
        self.path = path
        self.h5 = h5
        self.lock = threading.RLock()
        self.users = 0
        self._last_flush = 0.0
        try:  # the sec2 driver's descriptor: the file we write, whatever the path holds later
            self._fd = h5.id.get_vfd_handle()
            st = os.fstat(self._fd)
            self._identity = (st.st_dev, st.st_ino)
        except (OSError, ValueError, RuntimeError, TypeError):  # another driver: not watched
            self._fd = None
        self._writable = _writable(path)
        #: set once, when ``check`` first finds the file changed
        self.change: FileChange | None = None
        #: entries being written through this handle (scans in progress)
        self.writing: set[str] = set()
        #: bytes reserved beyond the end of the file (``reserve``), given back at close
        self._reserved = 0
        #: objects of a quarantined handle kept alive (h5py would close them when collected)
        self.kept: list = []
        #: the entries lost with this handle's file were said (by the first scan to see it)
        self.lost_reported = False

    def check(self) -> FileChange | None:
        """What happened to the file at ``path`` since it was opened (None: nothing).

        People and clean-up scripts delete, move, truncate or replace files, and the
        data policy makes folders read-only, while a scan is written. HDF5 would go on
        writing into an unlinked inode or a truncated file and the scan would look
        complete. Cheap (a few system calls): asked before every flush.

        A cut is seen when nothing is left of the file or its start is gone (HDF5 wrote
        past the cut: a hole where the superblock was). A cut in the middle is not: the
        file's size alone cannot tell it, since HDF5 itself shrinks files when it frees
        space at their end (by half and more, measured); the integrity check of the next
        start finds what it damaged.
        """
        if self.change is not None or self._fd is None:
            return self.change
        try:
            fst = os.fstat(self._fd)
        except OSError:
            return None
        try:
            pst = os.stat(self.path)
            same = (pst.st_dev, pst.st_ino) == self._identity
        except OSError:
            pst, same = None, False
        now = _fd_path(self._fd)
        change = None
        if not same:
            if now is not None and now != self.path:
                replaced = " (another file is at the path now)" if pst is not None else ""
                change = FileChange("moved", f"the file was moved to {now} while it was written{replaced}", now)
            elif pst is None:
                change = FileChange("deleted", "the file was deleted while it was written")
            else:
                change = FileChange("replaced", "the file was replaced by another file while it was written")
        elif fst.st_size < len(HDF5_SIGNATURE):
            change = FileChange("truncated", "the file was truncated while it was written (nothing is left of it)")
        elif (head := _head(self._fd)) != HDF5_SIGNATURE:
            if head.strip(b"\0"):
                change = FileChange("overwritten", "the file was overwritten: it no longer starts as an HDF5 file")
            else:  # cut, then HDF5 wrote past the cut: a hole where the superblock was
                change = FileChange("truncated", "the file was truncated while it was written (its start is gone)")
        elif self._writable and not _writable(self.path):
            change = FileChange("read-only", f"the file or its folder {os.path.dirname(self.path)} was made "
                                             "read-only while it was written")
        self.change = change
        return change

    def lose(self, why: str) -> None:
        """Nothing more goes into this handle's file (its writes failed): every scan using it
        writes its entries again, into the file at the path, when it next checks."""
        if self.change is None or not self.change.lost:
            self.change = FileChange("broken", why)

    def flush(self, min_interval: float = 0.0, before=None) -> bool:
        """Flush so readers that open the file see new points; rate-limited. ``before``:
        called (under the lock) when the flush happens, to put what is held in memory into
        the file first (deflated datasets' partial chunks).

        Never into a file that changed under us (``check``): FileChangedError instead.
        A moved file is still ours (same inode): it goes on, the scan says where it went.
        """
        now = time.monotonic()
        if now - self._last_flush < min_interval:
            return False
        change = self.check()
        if change is not None and change.kind != "moved":
            raise FileChangedError(self.path, change)
        with self.lock:
            if before is not None:
                before()
            self.h5.flush()
            if self.h5.id.get_mdc_size()[3] > TRIM_CACHE_ABOVE:
                trim_metadata_cache(self.h5)
        self._last_flush = now
        return True

    def reserve(self, nbytes: int) -> bool:
        """Blocks for the next ``nbytes`` written, taken on the disk now (``io.space.reserve``):
        False if the disk has no room for them (then nothing may be written)."""
        if self._fd is None:
            return True
        if space.reserve(self._fd, nbytes) is False:
            return False
        self._reserved = max(self._reserved, nbytes)
        return True

    def unreserve(self) -> None:
        if self._fd is not None and self._reserved:
            try:
                space.unreserve(self._fd, self._reserved)
            except OSError:
                pass
            self._reserved = 0

    def same_file(self, path: str) -> bool:
        """``path`` is (still) this handle's file (same inode)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return self._fd is not None and (st.st_dev, st.st_ino) == self._identity


def _fd_path(fd: int) -> str | None:
    """Where the open file ``fd`` is now (it follows a rename); None if deleted or unknown."""
    try:
        now = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return None if now.endswith(" (deleted)") else now


def _head(fd: int) -> bytes:
    try:
        return os.pread(fd, len(HDF5_SIGNATURE), 0)
    except OSError:
        return b""


def _writable(path: str) -> bool:
    """The file and its folder may be written (mode bits too: root passes ``os.access``)."""
    try:
        for where in (path, os.path.dirname(path)):
            if os.stat(where).st_mode & 0o222 == 0 or not os.access(where, os.W_OK):
                return False
    except OSError:
        return False
    return True


def lock_holders(path: str) -> list[str]:
    """The processes holding a lock on ``path`` ("pid 123 (silx)"), from /proc/locks."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    out = []
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        try:
            pid, where = int(parts[4]), parts[5].split(":")
            dev = (int(where[0], 16), int(where[1], 16), int(where[2]))
        except (IndexError, ValueError):
            continue
        if dev != want or pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            name = "?"
        label = f"pid {pid} ({name})"
        if label not in out:
            out.append(label)
    return out


class FileRegistry:
    def __init__(self, lock_timeout: float = 10.0, retry_period: float = 0.02,
                 on_open=None, on_close=None, allowed_roots=(), strict: bool = False):
        self.lock_timeout = lock_timeout
        self.retry_period = retry_period
        #: folders inside which files may be opened; ``strict``: only there (see path_refused)
        self.allowed_roots = tuple(allowed_roots)
        self.strict = strict
        #: told before a file is opened and after it is closed (crash recovery checks
        #: the files a killed writer had open: HDF5 is not crash-safe)
        self._on_open = on_open or (lambda path: None)
        self._on_close = on_close or (lambda path: None)
        self._handles: dict[str, FileHandle] = {}
        self._lock = threading.Lock()
        #: handles whose writes failed (disk full...): never closed, see release()
        self.quarantined: list[FileHandle] = []
        #: one lock per path being opened (the registry's own lock is not held meanwhile)
        self._opening: dict[str, threading.RLock] = {}
        #: path -> [(entry names, scan_info, error)]: entries of scans whose writes to the
        #: file failed, to be written as FAILED when the file is rebuilt (``writer.storage``)
        self.failed_entries: dict[str, list] = {}
        #: files to check (and rebuild if damaged) before they are opened: a crash left them
        #: and there was no room to rebuild them then
        self.suspects: set[str] = set()

    def acquire(self, path: str) -> FileHandle:
        """The shared handle of ``path``, opened (or created) on first use.

        The path is recorded (``on_open``) before HDF5 touches the file, so that a kill
        during the first writes leaves it to be checked; an open that fails removes the
        record again (``on_close``): a file that was never ours is never "salvaged".
        A handle whose file left the path (moved, deleted, ...) is not handed out again:
        the path gets a file of its own.
        """
        path = self._allowed(path)
        with self._lock:
            handle = self._current(path)
            if handle is not None:
                handle.users += 1
                return handle
            opening = self._opening.setdefault(path, threading.RLock())
        # opened outside the registry's lock: waiting for a locked file (a reader holds
        # it) must not hold up the scans of other files
        with opening:
            with self._lock:
                handle = self._current(path)  # opened by another scan meanwhile
                if handle is not None:
                    handle.users += 1
                    return handle
                for broken in self.quarantined:
                    if broken.same_file(path):
                        raise BrokenInProcess(errno.EIO, f"{path!r}: an earlier write to it failed in this "
                                                         "process; it must be moved aside before it is opened")
                self._on_open(path)
            try:
                handle = FileHandle(path, self._open(path))
            except BaseException:
                self._on_close(path)
                raise
            with self._lock:
                self._handles[path] = handle
                handle.users += 1
                return handle

    def _current(self, path: str) -> FileHandle | None:
        """The open handle of ``path``, unless its file left the path (its users finish
        with it; newcomers get the path's own file)."""
        handle = self._handles.get(path)
        if handle is not None and handle.check() is not None:
            self._handles.pop(path)
            return None
        return handle

    def path_lock(self, path: str) -> threading.RLock:
        """Held while the file at ``path`` is opened or rebuilt (one at a time per path)."""
        with self._lock:
            return self._opening.setdefault(path, threading.RLock())

    def needs_rebuild(self, path: str) -> bool:
        """A broken handle of this process still holds the file at ``path`` (see BrokenInProcess)."""
        with self._lock:
            return any(h.same_file(path) for h in self.quarantined)

    def _allowed(self, path: str) -> str:
        """``path`` normalised, if the writer may write it (else FileAccessError, see ``path_policy``)."""
        refused = PathPolicy(self.allowed_roots, self.strict).refusal(path)
        if refused is not None:
            raise FileAccessError(*refused)
        return os.path.normpath(path)

    def release(self, handle: FileHandle) -> None:
        with self._lock:
            handle.users -= 1
            if handle in self.quarantined:
                return
            if handle.users <= 0:
                if self._handles.get(handle.path) is handle:
                    self._handles.pop(handle.path)
                try:
                    with handle.lock:
                        handle.unreserve()
                        handle.h5.close()
                    self._on_close(handle.path)
                except Exception as exc:  # a failing close must not hide the scan's own result
                    # HDF5 could not write what it held: the id is half-closed, and closing
                    # or collecting it again crashes the process. Keep it, never touch it.
                    _logger.error("closing %s failed (%s): its handle is kept until the process ends",
                                  handle.path, exc)
                    self.quarantined.append(handle)

    def quarantine(self, handle: FileHandle, keep=(), force: bool = False) -> bool:
        """Keep a file whose writes failed open for the life of the process.

        After a failed write (disk full, file too large) HDF5 cannot close the
        file, and h5py then crashes the whole process when the object is closed
        or garbage-collected (its datasets too: ``keep`` holds them). Keeping it
        referenced keeps the other scans alive. ``force``: without trying a flush
        (the file at the path is not this handle's any more: nothing more goes into it).
        Returns True if the handle was broken (and is now quarantined).
        """
        if not force:
            try:
                handle.flush()
                return False
            except Exception:
                pass
        handle.lose("an earlier write to the file failed in this process")
        with self._lock:
            if handle not in self.quarantined:
                self.quarantined.append(handle)
            handle.kept.extend(keep)
            if self._handles.get(handle.path) is handle:
                self._handles.pop(handle.path)
        if not force:
            _logger.error("%s can no longer be written (kept open until the process ends)", handle.path)
        return True

    def _open(self, path: str) -> h5py.File:
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise FileAccessError(e.errno, f"cannot create folder {folder!r}: {e.strerror}") from e
        problem = not_an_hdf5_target(path)
        if problem:
            raise FileAccessError(errno.EEXIST, f"{path!r} {problem}: not written")
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise FileAccessError(errno.EACCES, f"no permission to write {path!r}")
        if not os.path.exists(path) and not os.access(folder, os.W_OK):
            raise FileAccessError(errno.EACCES, f"no permission to create files in {folder!r}")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                h5 = h5py.File(path, "a", track_order=True)
                break
            except (OSError, BlockingIOError) as e:
                if time.monotonic() > deadline:
                    if "lock" in str(e):
                        raise FileLocked(path, lock_holders(path), e) from e
                    raise FileAccessError(
                        errno.EAGAIN,
                        f"cannot open {path!r} for writing after {self.lock_timeout:.0f} s: {e}",
                    ) from e
                time.sleep(self.retry_period)
        _root_attributes(h5, path)
        _no_evictions(h5)
        return h5


def _no_evictions(h5: h5py.File) -> None:
    """Keep changed metadata in memory until we flush.

    HDF5 is not crash-safe: by default its metadata cache writes objects to disk
    whenever it likes, and a process killed then leaves objects beyond the
    superblock's end of allocation ("address past end of allocation"). Without
    evictions the file on disk only changes during our short, frequent flushes.
    """
    config = h5.id.get_mdc_config()
    config.evictions_enabled = False
    config.incr_mode = 0  # H5C_incr__off: required without evictions
    config.flash_incr_mode = 0  # H5C_flash_incr__off
    config.decr_mode = 0  # H5C_decr__off
    h5.id.set_mdc_config(config)


#: metadata cache entries (HDF5 objects, B-tree nodes...) above which a flush trims the cache
TRIM_CACHE_ABOVE = 4000
TRIM_CACHE_TO = 256 << 10  # bytes


#: metadata cache entries above which work in progress (a start tree, appends to thousands of
#: channels) flushes the file to trim the cache (see bound_metadata_cache)
BOUND_CACHE_ABOVE = 4000


def bound_metadata_cache(fid) -> bool:
    """Flush and trim when the cache holds more than ``BOUND_CACHE_ABOVE`` entries.

    Without evictions every object a scan touches stays cached until a flush (decoded
    headers, B-tree nodes): a start tree of thousands of channels is tens of thousands of
    entries, and the first append of each channel adds its chunk index, a lot of memory
    before the periodic flush comes. Called by the io layer while it works (``arrays``); the
    flush writes a state that is consistent as any periodic one (a start tree still under
    its staging name, channels appended up to different points). True if it flushed.
    """
    if fid.get_mdc_size()[3] <= BOUND_CACHE_ABOVE:
        return False
    h5py.h5f.flush(fid)
    trim_metadata_cache(h5py.File(fid))
    return True


def trim_metadata_cache(h5: h5py.File) -> None:
    """Drop clean metadata from the cache; only right after a flush (nothing is dirty then).

    With evictions off the cache keeps every object the file has seen since it was
    opened, and HDF5's flush walks all of them: a file kept open by back-to-back scans
    or a long sequence got slower to flush with every scan (short scans came to spend
    more time flushing than writing) and grew in memory. Evictions are allowed for one read of the root group, which
    makes HDF5 shrink the cache to ``TRIM_CACHE_TO``; clean entries are dropped
    without writing anything, so the file on disk still changes only when we flush.
    """
    config = h5.id.get_mdc_config()
    initial, minimum = config.initial_size, config.min_size
    config.evictions_enabled = True
    config.set_initial_size = True
    config.initial_size = config.min_size = min(TRIM_CACHE_TO, config.max_size)
    h5.id.set_mdc_config(config)
    try:
        h5.attrs.get("NX_class")  # any cache access: HDF5 makes room then
    finally:
        config.evictions_enabled = False
        config.initial_size, config.min_size = initial, minimum
        h5.id.set_mdc_config(config)


#: the root attribute ``creator`` of the files we create (the package, as BLISS's writer puts its own)
CREATOR = "nexus_writer_service"


def _root_attributes(h5: h5py.File, path: str) -> None:
    attrs = {
        "NX_class": "NXroot",
        "creator": CREATOR,
        "creator_version": __version__,
        "file_name": os.path.abspath(path),
        "file_time": datetime.now(timezone.utc).astimezone().isoformat(),
        "HDF5_Version": h5py.version.hdf5_version,
        "h5py_version": h5py.version.version,
    }
    root = h5["/"]  # (``h5.attrs`` opens the root group again at every use)
    for k, v in attrs.items():
        if not h5py.h5a.exists(root.id, k.encode()) and not new_attr(root, k, v):  # (a file BLISS
            root.attrs[k] = v  # or another writer made keeps its own)


def set_publisher(h5: h5py.File, info: dict) -> None:
    """The root attributes ``publisher`` and ``publisher_version`` from a scan's scan_info
    (BLISS puts ``bliss`` and its version there), as BLISS's own files carry them.

    Readers decide from them that the file is a BLISS file, and then wait for an entry's
    ``end_time`` before reading it (ewoksdata, blissdata's ``h5api``): ``end_time`` is
    therefore written last (``writer/scan.py``). The first scan's publisher stays.
    """
    publisher = info.get("publisher")
    if not isinstance(publisher, str) or not publisher or "publisher" in h5.attrs:
        return
    h5.attrs["publisher"] = publisher
    version = info.get("publisher_version")
    if isinstance(version, str) and version and "publisher_version" not in h5.attrs:
        h5.attrs["publisher_version"] = version
