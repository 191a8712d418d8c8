"""One scan's open file: its shared handle, its growing datasets, and its room on the disk.

Every step of a scan that writes goes through this object: it knows what the scan
holds in memory (deflated datasets' partial chunks) and so what a flush must put in
the file first, and it keeps the free-space rule: below the required free space the
scan flushes, gives its working slot back and waits for room (``storage.Waiter``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

from ..io.files import FileHandle, FileRegistry
from ..io.space import MB
from .config import WriterConfig
from .scheduler import Slot
from .storage import Waiter

#: reserved on the disk beyond what a write needs: the metadata HDF5 writes with it
RESERVE_BYTES = 1 << 20


class ScanFile:
    """The file a scan writes and what the scan keeps open in it."""

    def __init__(self, handle: FileHandle, config: WriterConfig, slot: Slot, waiter: Waiter,
                 warn: Callable[[str], None], log: logging.LoggerAdapter,
                 points: Callable[[], int]):
        self.handle = handle
        #: the scan's growing datasets, by stream name (``io.arrays``)
        self.arrays: dict = {}
        #: items written while the scan ran (growing views), replaced by the final ones
        self.live_paths: set[str] = set()
        #: this scan wrote since its last flush (the handle also limits flushes, per file)
        self.dirty = False
        self._config = config
        self._slot = slot
        self._waiter = waiter
        self._warn = warn
        self._log = log
        #: points written so far, said when the scan gives up waiting for room
        self._points = points
        self._last_space_check = 0.0

    @property
    def path(self) -> str:
        return self.handle.path

    def sync(self) -> None:
        """What this scan's datasets hold in memory goes into the file (before a flush)."""
        for array in self.arrays.values():
            array.sync()

    def flush(self, period: float = 0.0) -> bool:
        """Flush with this scan's memory first; False if flushed too recently (``period``)."""
        return self.handle.flush(period, before=self.sync)

    def flush_if_dirty(self) -> None:
        if self.dirty and self.flush(self._config.flush_period):
            self.dirty = False  # else flushed too recently: asked again next time

    def close(self, files: FileRegistry, entries: list[str]) -> None:
        """Give the file back; the scan's datasets close with it, unless HDF5 can no longer
        write it: then nothing of it is closed again (h5py would crash the process)."""
        handle, arrays = self.handle, list(self.arrays.values())
        handle.writing.difference_update(entries)
        broken = handle in files.quarantined
        if not broken:
            with handle.lock:
                for array in arrays:  # their open-dataset slots, at once
                    try:
                        array.close()  # what it holds in memory goes into the file first
                    except Exception as exc:
                        self._log.error("closing a dataset of %s failed: %s", handle.path, exc)
                        broken = True
                        break
        if broken:
            for array in arrays:  # what they hold in memory is in Redis still: dropped
                array.abandon()
            files.quarantine(handle, keep=arrays, force=True)
        files.release(handle)
        # the session keeps finished writers for their state: not their datasets and buffers
        self.arrays = {}

    # -- room on the disk ----------------------------------------------------
    def room_to_go_on(self) -> bool:
        """Checked between reads (cheap, at most every half second): below the required free
        space the scan stops reading (its data wait in Redis) until there is room."""
        now = time.monotonic()
        if now - self._last_space_check < min(self._config.storage_check_period, 0.5):
            return True
        self._last_space_check = now
        return self.make_room(0.0)

    def room_for(self, batches: dict) -> bool:
        """There is room now for these points and the chunks HDF5 allocates whole for them
        (reserved on the disk); False: they go in pieces, each waiting for its room."""
        rule = self._config.space_rule()
        if rule.required_mb <= 0:
            return True
        margin = 0
        for name, batch in batches.items():
            array = self.arrays.get(name)
            if array is not None and batch.data is not None:
                margin += getattr(batch.data, "nbytes", 0) + array.chunk_bytes
        return (not rule.shortage(self.path, margin / MB)
                and self.handle.reserve(margin + RESERVE_BYTES))

    def make_room(self, margin_mb: float) -> bool:
        """The free-space rule holds with ``margin_mb`` more written, and those blocks are
        reserved on the disk (``io.space.reserve``: no other process can take them before
        HDF5 writes). Else the scan flushes what it has (the rule's headroom is for that),
        gives its slot back and waits for room; False if it never came (given up)."""
        rule = self._config.space_rule()
        if rule.required_mb <= 0:  # the guard is off: HDF5 meets the disk itself
            return True
        path, need = self.path, int(margin_mb * MB) + RESERVE_BYTES
        if not rule.shortage(path, margin_mb) and self.handle.reserve(need):
            return True
        self._slot.take()
        self.flush()
        self.dirty = False
        started = time.monotonic()
        while True:
            shortage = self._waiter.room(path, margin_mb, started=started)
            if not shortage and self.handle.reserve(need):
                break
            waited = time.monotonic() - started
            if shortage or waited >= self._config.storage_wait:
                shortage = shortage or f"no room to reserve {need / MB:.1f} MB on {os.path.dirname(path)} (quota?)"
                self._warn(f"{shortage}: given up after {waited:.0f} s; "
                           f"{self._points()} points written, the rest stay in Redis")
                return False
            time.sleep(self._config.storage_check_period)
        self._log.info("room on the disk again: writing goes on")
        return True
