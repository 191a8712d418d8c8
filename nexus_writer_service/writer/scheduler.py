"""How a session's scans share the process: a few threads, fewer working at once.

Two limits, for two different costs:

- **Threads** (``ScanPool``, ``max_scan_threads``): a scan's life is one blocking call
  (``ScanWriter.run``), so each scan in progress holds a thread. Scans wait in a FIFO
  queue (PENDING) for one of at most ``max_scan_threads`` worker threads; 500 scans
  created within a second are 500 queued items, not 500 threads. Idle workers exit.
- **Work** (``Slots``, ``max_active_scans``): a scan holds a slot for all its file work
  (creating its entry, appending, rewriting its live views, flushing, finishing, closing);
  more would fight for the GIL and h5py's lock, each slower. A scan that waits for Redis
  (not yet prepared, no new data, not yet closed, children of a sequence not yet written)
  gives its slot back and takes one again when it has work: a live view or a flush due
  is work even when no new data came. A scan that wrote nothing since its last flush
  has nothing to flush, so one that waits long takes no slot (unless it has live views).
  So scans that never close, or a long slow one, keep a thread each, never a slot:
  later scans are written at once (up to ``max_scan_threads`` such scans).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Generic, TypeVar

_logger = logging.getLogger(__name__)


class Slot:
    """One scan's claim on the session's working slots; ``take``/``give`` are idempotent."""

    def __init__(self, semaphore: threading.Semaphore | None):
        self._sem = semaphore
        self.held = False

    def take(self) -> None:
        """Before work: blocks while ``max_active_scans`` other scans work."""
        if self._sem is not None and not self.held:
            self._sem.acquire()
            self.held = True

    def give(self) -> None:
        """Before waiting for Redis: another scan may work meanwhile."""
        if self._sem is not None and self.held:
            self.held = False
            self._sem.release()


#: a scan written outside a session (tests, tools): no limit
NO_SLOT = Slot(None)


class Slots:
    """At most ``n`` scans working at the same time."""

    def __init__(self, n: int):
        self._sem = threading.Semaphore(max(1, n))

    def slot(self) -> Slot:
        return Slot(self._sem)


#: what the pool runs (the session's scan writers)
Item = TypeVar("Item")


class ScanPool(Generic[Item]):
    """Runs ``run(item)`` for each submitted item, FIFO, on at most ``max_threads`` threads.

    A worker thread takes the next item when it is done with one, and exits after
    ``idle_exit`` seconds without work (a quiet session holds no scan threads).
    """

    def __init__(self, run: Callable[[Item], None], max_threads: int, name: str = "scan",
                 idle_exit: float = 5.0):
        self._run = run
        self.max_threads = max(1, max_threads)
        self._name = name
        self._idle_exit = idle_exit
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition()
        self._workers = 0
        self._idle = 0
        self._running = 0
        self._started = 0

    @property
    def threads(self) -> int:
        """Worker threads alive now."""
        with self._cond:
            return self._workers

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, item: Item) -> None:
        with self._cond:
            self._queue.append(item)
            if self._idle == 0 and self._workers < self.max_threads:
                self._workers += 1
                self._started += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()
            else:
                self._cond.notify_all()  # wait_idle() waits on it too

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._idle += 1
                    woken = self._cond.wait(self._idle_exit)
                    self._idle -= 1
                    if not woken and not self._queue:
                        self._workers -= 1
                        self._cond.notify_all()
                        return
                item = self._queue.popleft()
                self._running += 1
            try:
                self._run(item)
            except Exception:  # the worker goes on with the next item (and stays counted)
                _logger.exception("%s: an item failed", self._name)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
            del item  # a finished scan's writer must not outlive it here

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or running (within ``timeout`` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._running, timeout)
