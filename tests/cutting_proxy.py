"""A TCP proxy in front of a live server that can cut a connection after N bytes of its answer:
how a client meets a dropped network (a load balancer's timeout, a phone changing networks) in a
test, without touching the server. Bounded: it serves until stopped, on the loopback only."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class CuttingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut_after: int | None = None
        self._drop_next = False
        self._lock = threading.Lock()
        self.cuts = 0  # connections cut so far
        self.requests: list[bytes] = []  # the first line of each request seen
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_next(self, after_bytes: int) -> None:
        """The next connection opened is cut after `after_bytes` bytes from the server."""
        with self._lock:
            self._cut_after = after_bytes

    def drop_next(self) -> None:
        """The next connection opened is closed at once: its request never reaches the server."""
        with self._lock:
            self._drop_next = True

    def stop(self) -> None:
        self._stopped = True
        with suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut, self._cut_after = self._cut_after, None
                drop, self._drop_next = self._drop_next, False
            if drop:
                self.cuts += 1
                with suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            threading.Thread(target=self._pump, args=(client, server, None, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, cut, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut: int | None, upstream: bool) -> None:
        sent = 0
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if upstream:
                    self.requests.append(chunk.split(b"\r\n", 1)[0])
                if cut is not None and sent + len(chunk) >= cut:
                    dst.sendall(chunk[: cut - sent])
                    self.cuts += 1
                    break
                dst.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    s.close()
