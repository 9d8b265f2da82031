"""Not being interrupted while cleaning up the processes and databases a command started; measuring threads first."""

from __future__ import annotations

import os
import signal
import threading
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
