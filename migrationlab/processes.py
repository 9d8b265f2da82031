"""Not being interrupted while cleaning up the processes and databases a command started; measuring threads first."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MEASURING_NICENESS = -5


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ignore Ctrl-C while cleaning up, so a second Ctrl-C cannot leave a server or a database behind.

    Everything cleaned up under it ends within seconds (servers get 10 s, then SIGKILL)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def favour_this_thread() -> None:
    """Run the calling thread at a higher priority, where that is allowed (root or CAP_SYS_NICE on Linux).

    The probe and the sampler need little CPU, but need it on time: when gunicorn and PostgreSQL saturate the
    machine (a server catching up after a long lock), a normal-priority thread can wait a second for a core.
    Without the permission this does nothing, and the report's probe.max_send_lag_s / sampler.max_gap_s show
    what that cost."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MEASURING_NICENESS)
    except (OSError, AttributeError):
        pass


def notify_without_waiting(condition: threading.Condition) -> None:
    """Wake the threads waiting on `condition`, unless one of them holds it right now (it is checking its
    predicate): then skip, it checks again at the next notification. A measuring thread never waits on another."""
    if condition.acquire(blocking=False):
        try:
            condition.notify_all()
        finally:
            condition.release()


class Poller:
    """Calls `poll()` every `interval_s` in a daemon thread of its own until stop(), at the interval's pace (a slow
    poll delays the next one, never bunches them). The poll uses `connection()`: a connection of its own, opened by
    `connect()` in the caller's thread at start() (so a bad URL fails there, not silently later) and again after it
    was lost. A failed poll is counted (`errors`, `last_error`) and the thread goes on. `cpu_s`: the thread's CPU
    time, known after stop()."""

    thread_name = "poller"

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.errors = 0
        self.last_error: str | None = None
        self.cpu_s = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._connection = None

    def connect(self):
        raise NotImplementedError

    def poll(self) -> None:
        raise NotImplementedError

    def connection(self):
        if self._connection is None or self._connection.closed:
            self._connection = self.connect()
        return self._connection

    def start(self) -> None:
        self._connection = self.connect()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _run(self) -> None:
        import psycopg2

        favour_this_thread()
        due = time.monotonic()
        while not self._stopping.is_set():
            try:
                self.poll()
                self.last_error = None
            except psycopg2.Error as failure:
                self.errors += 1
                text = str(failure).strip()
                self.last_error = text.splitlines()[0] if text else type(failure).__name__
                if self._connection is not None and self._connection.closed:
                    self._connection = None  # opened again at the next poll
            due = max(due + self.interval_s, time.monotonic())
            self._stopping.wait(due - time.monotonic())
        self.cpu_s = time.thread_time()
