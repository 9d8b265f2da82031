"""Progress while a window runs: one status line, rewritten in place on a terminal, a line every few seconds
otherwise (a log file or CI should not get a line per second)."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable

from migrationlab.locks import lock_name, lock_strength
from migrationlab.showdown.analysis import ACCESS_WORDS, MIGRATION_APPLICATION
from migrationlab.showdown.clock import Clock
from migrationlab.showdown.probe import Probe
from migrationlab.showdown.sampler import LockSampler

TERMINAL_EVERY_S = 0.5
LOG_EVERY_S = 5.0


def live_status(label: str, started_s: float, first_record: int, clock: Clock, probe: Probe,
                sampler: LockSampler | None) -> str:
    """`label  12.0 s | reads 0/240 failed, 14 hanging up to 2.3 s | writes ... | migration holds ACCESS EXCLUSIVE
    on large_user, 32 waiting`; `first_record`: how many requests the probe had recorded when the window began."""
    now = clock.now()
    parts = [f"{label} {now - started_s:6.1f} s"]
    hanging = probe.in_flight()
    answered = [r for r in probe.records(since=first_record) if r.sent_s >= started_s]
    for endpoint, word in ACCESS_WORDS.items():
        mine = [r for r in answered if r.endpoint == endpoint]
        stuck = [now - sent for name, sent in hanging if name == endpoint and now - sent > 0.5]
        text = f"{word} {sum(r.failed for r in mine)}/{len(mine)} failed"
        if stuck:
            text += f", {len(stuck)} hanging up to {max(stuck):.1f} s"
        parts.append(text)
    sample = sampler.latest() if sampler is not None else None
    if sample is not None:
        held = [row for row in sample.rows if row.application == MIGRATION_APPLICATION and row.relation]
        if held:
            strongest = max(held, key=lambda row: (row.granted, lock_strength(row.mode)))
            state = "holds" if strongest.granted else "waits for"
            waiting = sum(1 for row in sample.rows if not row.granted and row.pid not in {h.pid for h in held}
                          and set(row.blocked_by) & {h.pid for h in held})
            parts.append(f"migration {state} {lock_name(strongest.mode)} on {strongest.relation}, {waiting} waiting")
    return " | ".join(parts)


class Ticker:
    """Print `status()` regularly in a background thread while the `with` block runs; a final line at the end."""

    def __init__(self, status: Callable[[], str], stream=None):
        self.status = status
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="showdown-ticker", daemon=True)
        self._width = 0

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._show(self.status(), final=True)

    def _show(self, text: str, final: bool = False) -> None:
        if self.interactive:
            text = text[: shutil.get_terminal_size().columns - 3]  # a wrapped line cannot be rewritten in place
            padding = " " * max(0, self._width - len(text))
            self.stream.write(f"\r  {text}{padding}" + ("\n" if final else ""))
            self._width = len(text)
        else:
            self.stream.write(f"  {text}\n")
        self.stream.flush()

    def _run(self) -> None:
        every = TERMINAL_EVERY_S if self.interactive else LOG_EVERY_S
        while not self._stop.wait(every):
            self._show(self.status())
