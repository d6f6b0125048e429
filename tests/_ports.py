"""A loopback address where nothing listens, held for as long as a test needs it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` whose connections are refused (``ECONNREFUSED``) until
    the ``with`` block ends: the port is bound but never listened on, so that no other
    process can take it meanwhile (a port found free, then used later, may be another
    test's server by then, one that answers)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@contextlib.contextmanager
def blackholed_url() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` whose connections time out, as behind a firewall that
    drops packets: its listener's queue is full, so the kernel ignores new connections."""
    with (
        socket.create_server(("127.0.0.1", 0), backlog=0) as listener,
        contextlib.ExitStack() as held,
    ):
        address = listener.getsockname()
        for _ in range(4):  # more than a backlog of 0 lets in, whatever the kernel rounds it to
            waiting = held.enter_context(socket.socket())
            waiting.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                waiting.connect(address)
        yield f"http://127.0.0.1:{address[1]}"
