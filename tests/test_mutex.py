"""final's queue lock (``speed.Mutex``): a lock first, whatever its waiters do while they wait.

It polls instead of sleeping, for speed (see its docstring); these check that
it still excludes, times out and serves a herd.  No test here measures speed.
"""

from __future__ import annotations

import threading
import time

import pytest

from jobqueue.final.speed import _MAX_POLLING, Mutex, new_mutex


@pytest.mark.parametrize("threads", [2, _MAX_POLLING + 8])  # polling only; polling and a herd
def test_no_increment_is_lost_under_contention(threads: int) -> None:
    mutex = Mutex()
    total = [0]
    rounds = 2_000
    go = threading.Barrier(threads)

    def add() -> None:
        go.wait()
        for _ in range(rounds):
            with mutex:
                value = total[0]
                if value % 97 == 0:
                    # A switch inside the critical section: the window a lost
                    # update needs, and what makes the others poll or queue.
                    time.sleep(0)
                total[0] = value + 1

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert total[0] == threads * rounds
    assert not mutex.locked()


def test_acquire_without_blocking_or_with_a_timeout_gives_up_on_a_held_lock() -> None:
    mutex = Mutex()
    assert mutex.acquire()
    assert mutex.locked()
    assert mutex.acquire(False) is False
    assert mutex.acquire(timeout=0.01) is False
    mutex.release()
    assert mutex.acquire(timeout=0.01) is True
    mutex.release()


def test_a_waiter_gets_the_lock_once_it_is_released() -> None:
    mutex = Mutex()
    mutex.acquire()
    got = threading.Event()

    def take() -> None:
        with mutex:
            got.set()

    waiter = threading.Thread(target=take)
    waiter.start()
    assert not got.wait(0.05)  # held: the waiter waits
    mutex.release()
    assert got.wait(10)
    waiter.join()


def test_a_condition_on_it_waits_and_is_notified() -> None:
    mutex = new_mutex()
    ready = threading.Condition(mutex)
    items: list[int] = []

    def produce() -> None:
        with ready:
            items.append(1)
            ready.notify()

    with ready:
        producer = threading.Thread(target=produce)
        producer.start()
        assert ready.wait_for(lambda: items, timeout=10)
    producer.join()
    with pytest.raises(RuntimeError, match="un-acquired"):
        ready.notify()  # as with threading.Lock: only the owner may notify
