"""The gateway's listening sockets: bound by the gateway itself, or by `echonats run` and inherited.

Several gateway processes serve one port with one SO_REUSEPORT socket each: the kernel spreads new
connections over them by a hash of the connection's addresses. `echonats run` binds those sockets
and hands each to its gateway as an inherited descriptor, so a restarted gateway gets the same
socket back and connections queued on it while it was down wait for it instead of being reset.
"""

from __future__ import annotations

import socket

from echonats.settings import Settings

BACKLOG = 2048


def listening_socket(
    settings: Settings, *, port: int | None = None, reuse_port: bool = False
) -> socket.socket:
    """A listening socket on the gateway's host and port (or ``port``). Accepted client sockets
    inherit its send buffer size: a fixed buffer bounds what one slow client can pin in the kernel
    (autotuning lets it grow to ~4 MB on Linux), so the per-connection queue, not the kernel,
    decides when a client is too slow."""
    family = socket.AF_INET6 if ":" in settings.gateway.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if settings.realtime.socket_send_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.realtime.socket_send_buffer)
        sock.bind((settings.gateway.host, settings.gateway.port if port is None else port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def inherited_socket(fd: int) -> socket.socket:
    """A listening socket passed down by the parent process as descriptor ``fd``."""
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        sock.detach()
        raise OSError(f"descriptor {fd} is not a listening TCP socket")
    return sock
