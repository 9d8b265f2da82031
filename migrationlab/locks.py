"""PostgreSQL's table lock modes, as pg_locks names them, weakest first; shared by the lock judge and the showdown."""

import re

LOCK_MODES = (
    "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
    "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
)


def lock_strength(mode: str) -> int:
    """Position in LOCK_MODES (-1 for a mode that is not a table lock mode)."""
    return LOCK_MODES.index(mode) if mode in LOCK_MODES else -1


def lock_name(mode: str) -> str:
    """AccessExclusiveLock -> ACCESS EXCLUSIVE (how the PostgreSQL docs name the modes)."""
    words = re.findall(r"[A-Z][a-z]*", mode.removesuffix("Lock"))
    return " ".join(words).upper() or mode
