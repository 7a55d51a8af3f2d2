"""Whether a server can listen on a TCP port, asked before anything is built for it."""

from __future__ import annotations

import socket


def in_use(host: str, port: int) -> bool:
    """True when another process listens on (host, port): a server started there would fail at its
    end, after loading the model, with the cause deep in its own output."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a closed server's TIME_WAIT does not count
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
