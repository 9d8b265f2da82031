"""The watch's screen, drawn with rich from a model.Screen: 80 columns, 24 lines, every section at a fixed place
(nothing jumps while the presenter talks), words and colours large enough for the back of a room.

     1  header: project, API address, database, wall clock
     3  API: per endpoint, its state as the curl loop counts it, the last 30 s of latencies (one column a second,
        log scale from 5 ms to the timeout: green answered 200, red failed, yellow still waiting), and the
        numbers of the last 10 s
     9  MIGRATION: who, its statement, the lock it waits for (behind whom), the locks it holds, its progress
    17  LOCK QUEUE: who waits on whom
    23  totals since the watch started, the log file
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from migrationlab.watch.model import (
    BLOCKS, RECENT_S, EndpointView, MigrationView, QueueLine, Screen, strip_level,
)

WIDTH = 80
HEIGHT = 24
QUEUE_ROWS = 5
STATEMENT_ROWS = 2

OK, BAD, WAIT, DIM = "bold green", "bold red", "bold yellow", "grey50"
CELL_STYLE = {"ok": "green", "failed": "bold red", "waiting": "bold yellow", "empty": ""}


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"


def _line(*parts: tuple[str, str] | str) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        else:
            text.append(*part)
    text.truncate(WIDTH, overflow="ellipsis")
    return text


def _rule(title: str, note: str = "") -> Text:
    text = _line(("━ ", "bold cyan"), (title, "bold cyan"))
    if note:
        text.append(f"  {note}", DIM)
    text.append(" ")
    text.append("━" * max(0, WIDTH - text.cell_len), "bold cyan")
    return text


def _header(screen: Screen) -> Text:
    left = Text(no_wrap=True)
    left.append(" WATCH ", "bold black on cyan")
    left.append(f" {screen.title} ", "bold")
    left.append(screen.target, DIM)
    clock = f" {screen.wall_clock} "
    left.truncate(WIDTH - len(clock) - 1, overflow="ellipsis")
    left.append(" " * (WIDTH - left.cell_len - len(clock)))
    left.append(clock, "bold")
    return left


def _badge(endpoint: EndpointView) -> Text:
    if endpoint.state == "failed":
        return Text(f" ✘ FAILED {endpoint.code} ", style="bold white on red")
    if endpoint.state == "waiting":
        return Text(f" … WAITING {endpoint.waiting_s:3.1f}s ", style="bold black on yellow")
    if endpoint.state == "success":
        return Text(f" ✔ SUCCESS {endpoint.code} ", style="bold black on green")
    return Text(" … no answer yet ", style="bold")


def _strip(endpoint: EndpointView, timeout_s: float) -> Text:
    text = Text(no_wrap=True, end="")
    for cell in endpoint.strip:
        if cell.latency_s is None:
            text.append(" ")
        else:
            text.append(BLOCKS[strip_level(cell.latency_s, timeout_s)], CELL_STYLE[cell.kind])
    return text


def _endpoint_lines(endpoint: EndpointView, timeout_s: float) -> list[Text]:
    first = _line((f" {endpoint.name:<13}", "bold"))
    badge = _badge(endpoint)
    first.append(badge)
    first.append(" " * max(1, 19 - badge.cell_len))
    first.append("▕", DIM)
    first.append(_strip(endpoint, timeout_s))
    first.append("▏", DIM)
    if endpoint.latency_s is not None:
        first.append(f" {endpoint.latency_s:6.3f} s", "bold")
    second = _line(" " * 14)
    parts: list[tuple[str, str]] = []
    if endpoint.outage_s is not None:
        parts.append((f"failing {endpoint.outage_s:.1f} s", BAD))
    if endpoint.hanging:
        parts.append((f"{endpoint.hanging} waiting {endpoint.waiting_s:.1f} s", WAIT))
    parts.append((f"{endpoint.recent_failed}/{endpoint.recent} failed in {RECENT_S:.0f} s",
                  BAD if endpoint.recent_failed else OK))
    if endpoint.recent_median_s is not None and endpoint.outage_s is None:
        parts.append((f"median {seconds(endpoint.recent_median_s)}", ""))
    if endpoint.recent_max_s is not None and endpoint.outage_s is None:
        parts.append((f"max {seconds(endpoint.recent_max_s)}", ""))
    for index, (words, style) in enumerate(parts):
        if index:
            second.append(" · ")
        second.append(words, style)
    second.truncate(WIDTH, overflow="ellipsis")
    return [first, second]


def _statement_lines(statement: str) -> list[Text]:
    width = WIDTH - 2
    rows = []
    rest = statement
    for index in range(STATEMENT_ROWS):
        piece, rest = rest[:width], rest[width:]
        if index == STATEMENT_ROWS - 1 and rest:
            piece = piece[: width - 1] + "…"
        rows.append(_line("  ", (piece, "bold white")))
    return rows


MIGRATION_ROWS = 7


def _migration_lines(migration: MigrationView | None) -> list[Text]:
    """Who and how long, its statement (2 lines), the lock it waits for and the one it holds, its progress
    (2 lines): always MIGRATION_ROWS lines."""
    if migration is None:
        return [_line(("  no migration running", DIM))] + [_line("")] * (MIGRATION_ROWS - 1)
    who = _line((f"  migration {migration.pid}", "bold"), f" ({migration.application}) · ")
    if migration.idle_s is not None:
        who.append(f"idle {seconds(migration.idle_s)} since its last statement")
    else:
        who.append(migration.state)
        if migration.statement_s is not None:
            who.append(f" · statement {seconds(migration.statement_s)}")
        if migration.xact_s is not None:
            who.append(f" · transaction {seconds(migration.xact_s)}")
    if migration.more:
        who.append(f" · +{migration.more} more", DIM)
    lines = [who, *_statement_lines(migration.statement)]
    locks = []
    for wait in migration.waits:
        mode = f"{wait.mode} on " if wait.mode else ""
        behind = f" · behind {', '.join(wait.behind)}" if wait.behind else ""
        locks.append(_line(("  WAITS FOR ", "bold black on yellow"), " ", (f"{mode}{wait.relation}", WAIT),
                           f" · {seconds(wait.seconds)}{behind}"))
    for hold in migration.holds:
        strong = hold.mode in ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE")
        locks.append(_line(("  HOLDS ", "bold white on red" if strong else "bold black on green"), " ",
                           (f"{hold.mode} on {hold.relation}", BAD if strong else OK),
                           f" · {seconds(hold.seconds)}"))
    if not locks:
        locks.append(_line(("  holds no lock on the watched tables", DIM)))
    lines += locks[:2]
    lines += [_line("")] * (MIGRATION_ROWS - 2 - len(lines))
    progress = migration.progress
    if progress is None:
        lines += [_line(("  no progress to show: PostgreSQL reports none for this statement", DIM)), _line("")]
        return lines
    bar = _line(("  PROGRESS ", "bold"), (f"{progress.label} ", "bold"))
    if progress.fraction is not None:
        width = max(10, min(30, WIDTH - bar.cell_len - 6))
        filled = round(progress.fraction * width)
        bar.append("█" * filled, "bold green")
        bar.append("░" * (width - filled), DIM)
        bar.append(f" {progress.fraction * 100:3.0f}%", "bold")
    detail = " · ".join(part for part in (progress.phase, progress.detail) if part)
    lines += [bar, _line(f"           {detail}")]
    return lines


def _queue_line(line: QueueLine) -> Text:
    style = BAD if line.kind == "API" else WAIT
    text = _line(("  ", ""), (line.waiters, style), " → ", (line.blockers, "bold"))
    text.append(f"  {line.what}")
    if line.longest_s is not None:
        text.append(f" · {seconds(line.longest_s)}", "bold")
    text.truncate(WIDTH, overflow="ellipsis")
    return text


def render(screen: Screen, timeout_s: float = 3.0) -> Group:
    lines = [_header(screen), _line("")]
    lines.append(_rule("API", f"curl --max-time {timeout_s:g}: 200 = SUCCESS, else FAILED"))
    for endpoint in screen.endpoints:
        lines += _endpoint_lines(endpoint, timeout_s)
    lines.append(_line(""))
    lines.append(_rule("MIGRATION", "what it runs, waits for, holds"))
    lines += _migration_lines(screen.migration)
    lines.append(_line(""))
    lines.append(_rule("LOCK QUEUE", "who waits on whom"))
    queue = [_queue_line(line) for line in screen.queue]
    if screen.more_waiting:
        queue[-1] = _line((f"  … and {screen.more_waiting + 1} more waiting", WAIT))
    if not queue:
        queue = [_line(("  nobody waits", OK))]
    lines += queue + [_line("")] * (QUEUE_ROWS - len(queue))
    totals = screen.totals
    footer = _line(f" {totals.requests:,} requests · ")
    footer.append(f"{totals.failed:,} failed", BAD if totals.failed else OK)
    footer.append(f" · longest outage {totals.longest_outage_s:.1f} s")
    if screen.problem:
        footer.append(" · ")
        footer.append(screen.problem, BAD)
    else:
        footer.append(f" · log {screen.log}", DIM)
        if footer.cell_len + 15 <= WIDTH:
            footer.append(" · Ctrl-C stops", DIM)
    footer.truncate(WIDTH, overflow="ellipsis")
    lines.append(footer)
    return Group(*lines)
