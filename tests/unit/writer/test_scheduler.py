"""How scans share the process (``writer/scheduler.py``): slots bound the scans working at
once, the pool bounds the threads and runs scans in the order they came."""

from __future__ import annotations

import threading
import time

from nexus_writer_service.writer.scheduler import NO_SLOT, ScanPool, Slots


def test_a_slot_is_taken_and_given_once_whatever_the_calls():
    slots = Slots(1)
    a, b = slots.slot(), slots.slot()
    a.take()
    a.take()  # idempotent: still one taken
    assert a.held is True
    got = threading.Event()
    threading.Thread(target=lambda: (b.take(), got.set()), daemon=True).start()
    assert got.wait(0.2) is False  # b waits while a works
    a.give()
    a.give()  # idempotent: one given back, not two
    assert got.wait(5) is True
    assert (a.held, b.held) == (False, True)
    # the one slot is b's: a third scan waits (a second give by a released nothing more)
    c = slots.slot()
    other = threading.Event()
    threading.Thread(target=lambda: (c.take(), other.set()), daemon=True).start()
    assert other.wait(0.2) is False
    b.give()
    assert other.wait(5) is True


def test_at_least_one_slot():
    slots = Slots(0)
    first = slots.slot()
    first.take()
    assert first.held is True


def test_no_slot_never_waits_and_never_holds():
    NO_SLOT.take()
    NO_SLOT.take()
    assert NO_SLOT.held is False
    NO_SLOT.give()
    assert NO_SLOT.held is False


def test_n_slots_let_n_scans_work():
    slots = Slots(3)
    held = [slots.slot() for _ in range(3)]
    for slot in held:
        slot.take()
    assert [s.held for s in held] == [True, True, True]
    fourth = slots.slot()
    done = threading.Event()
    threading.Thread(target=lambda: (fourth.take(), done.set()), daemon=True).start()
    assert done.wait(0.2) is False
    held[1].give()
    assert done.wait(5) is True


def test_the_pool_runs_items_in_order_on_at_most_max_threads():
    release = threading.Event()
    started, order, lock = [], [], threading.Lock()

    def run(item):
        with lock:
            started.append(item)
        release.wait(10)
        with lock:
            order.append((item, threading.current_thread().name))

    pool = ScanPool(run, max_threads=2, name="t", idle_exit=0.2)
    for item in range(5):
        pool.submit(item)
    deadline = time.monotonic() + 5
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert (sorted(started), pool.threads, pool.queued) == ([0, 1], 2, 3)
    assert pool.wait_idle(0.05) is False
    release.set()
    assert pool.wait_idle(10) is True
    assert sorted(item for item, _ in order) == [0, 1, 2, 3, 4]
    assert started[2:] == [2, 3, 4]  # FIFO
    assert {name for _, name in order} == {"t-1", "t-2"}
    # idle workers exit
    deadline = time.monotonic() + 5
    while pool.threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.threads == 0


def test_an_idle_worker_takes_new_items_without_a_new_thread():
    done = []
    pool = ScanPool(done.append, max_threads=4, name="r", idle_exit=5)
    pool.submit("a")
    assert pool.wait_idle(5) is True
    pool.submit("b")
    assert pool.wait_idle(5) is True
    assert (done, pool.threads) == (["a", "b"], 1)


def test_a_failing_item_does_not_stop_the_pool():
    done = []

    def run(item):
        if item == "bad":
            raise RuntimeError("boom")
        done.append(item)

    pool = ScanPool(run, max_threads=1, name="f", idle_exit=5)
    pool.submit("bad")
    pool.submit("good")
    assert pool.wait_idle(5) is True
    assert done == ["good"]


def test_a_pool_with_nothing_to_do_is_idle():
    pool = ScanPool(lambda item: None, max_threads=0)
    assert (pool.max_threads, pool.threads, pool.queued) == (1, 0, 0)
    assert pool.wait_idle(0) is True
