"""A small TCP proxy on 127.0.0.1 that can cut the first response to a chosen request: it lets
the request through, waits until the server starts answering (so the server has committed),
then closes the client's connection without passing a byte on."""

from __future__ import annotations

import socket
import threading
from typing import List, Optional, Tuple


class CuttingProxy:
    def __init__(self, upstream: Tuple[str, int], cut_marker: bytes, cuts: int = 1,
                 replace_with: Optional[bytes] = None) -> None:
        """`replace_with`: instead of closing, answer the cut request with these bytes (e.g. a
        503 outcome_unknown) after the server's real answer was dropped."""
        self.replace_with = replace_with
        self.keys_seen: List[str] = []
        self.upstream = upstream
        self.cut_marker = cut_marker
        self.cuts_remaining = cuts
        self.cuts_done = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: List[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            state = {"victim": False}
            threading.Thread(target=self._pump_up, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client, state),
                             daemon=True).start()

    def _pump_up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                for line in data.split(b"\r\n"):
                    if line.lower().startswith(b"idempotency-key:") and self.cut_marker in data:
                        self.keys_seen.append(line.split(b":", 1)[1].strip().decode())
                if self.cut_marker in data:
                    with self._lock:
                        if self.cuts_remaining > 0:
                            self.cuts_remaining -= 1
                            state["victim"] = True
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(server)

    def _pump_down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if state["victim"]:
                    # The server has answered, so it committed: drop the answer on the floor.
                    with self._lock:
                        self.cuts_done += 1
                    if self.replace_with is not None:
                        client.sendall(self.replace_with)
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        for sock in self._sockets:
            _close(sock)


def _close(sock: Optional[socket.socket]) -> None:
    if sock is None:
        return
    # shutdown() first: a close() alone does not wake the other pump blocked in recv().
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
