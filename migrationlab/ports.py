"""Ports on 127.0.0.1: whether one is free, and the one-line refusal when it is not (the lab's PostgreSQL, its web
servers, the container's gunicorn)."""

from __future__ import annotations

import socket

from migrationlab.errors import LabError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nobody listens on the port. Raises PermissionError if this process may not listen on it at all
    (below 1024 without privileges): that is not "in use", and the fix differs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except PermissionError:
            raise
        except OSError:
            return False
    return True


def require_free_port(port: int, remedy: str = "stop it or pass --port") -> None:
    try:
        free = port_is_free(port)
    except PermissionError:
        raise LabError(f"port {port} needs privileges; pick a port above 1023") from None
    if not free:
        raise LabError(f"port {port} on 127.0.0.1 is in use by another process; {remedy}")
