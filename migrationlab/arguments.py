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
