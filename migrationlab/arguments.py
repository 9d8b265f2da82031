"""Argument types the command-line tools share (argparse: a bad value is one line, the option named)."""

from __future__ import annotations

import argparse


def row_count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of rows") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the number of rows must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (1-65535)")
    return int(text)


def postgres_versions(text: str) -> list[int]:
    """--postgres 16, or a list (14,15,16): majors, checked against the lab's by databases.postgres_major; `all`:
    an empty list (every major the lab knows, for the catalog)."""
    if text.strip().lower() == "all":
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"'{text}' is not a PostgreSQL major (e.g. 16) or a list of them (15,16,18)")
    return list(dict.fromkeys(int(part) for part in parts))


def postgres_version(text: str) -> int:
    """--postgres MAJOR: one major."""
    versions = postgres_versions(text)
    if len(versions) != 1:  # `all` included
        raise argparse.ArgumentTypeError(f"'{text}': one PostgreSQL major here (a list is for catalog)")
    return versions[0]
