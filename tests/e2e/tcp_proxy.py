"""A small TCP proxy for fault tests: forwards 127.0.0.1:<port> to a target and, on demand, cuts
every connection it carries (both sides closed at once, as a dropped network path or a load
balancer restart would) or freezes them (kept open, never forwarded again, so the client sees a
half-open connection that acknowledges but never answers). New connections after a cut or a
freeze are forwarded normally."""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    BUFFER_BYTES = 65_536

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []  # GUARDED_BY(lock)
        self.frozen: list[socket.socket] = []  # kept open until close(), never read
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # ---- faults ---------------------------------------------------------------------------
    def cut_all(self) -> int:
        """Closes both sides of every connection now; returns how many were cut."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
            for client, server in pairs:
                for sock in (client, server):
                    self._unregister(sock)
                    sock.close()
        return len(pairs)

    def freeze_all(self) -> int:
        """Stops forwarding on every connection but keeps its sockets open: the kernel still
        acknowledges what the client sends, nothing ever comes back."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
            for client, server in pairs:
                for sock in (client, server):
                    self._unregister(sock)
                    self.frozen.append(sock)
        return len(pairs)

    def connection_count(self) -> int:
        with self.lock:
            return len(self.pairs)

    def close(self) -> None:
        self.stopping = True
        self.listener.close()
        self.cut_all()
        for sock in self.frozen:
            sock.close()
        self.thread.join(timeout=5)

    # ---- forwarding -----------------------------------------------------------------------
    def _unregister(self, sock: socket.socket) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _run(self) -> None:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        while not self.stopping:
            try:
                events = self.selector.select(timeout=0.05)
            except (OSError, ValueError):
                continue
            for key, _ in events:
                if key.data is None:
                    self._accept()
                else:
                    self._forward(key.fileobj, key.data)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.pairs.append((client, server))
            self.accepted += 1
            self.selector.register(client, selectors.EVENT_READ, server)
            self.selector.register(server, selectors.EVENT_READ, client)

    def _forward(self, source: socket.socket, destination: socket.socket) -> None:
        with self.lock:
            if not any(source in pair for pair in self.pairs):
                return  # cut or frozen meanwhile
            try:
                data = source.recv(self.BUFFER_BYTES)
                if data:
                    destination.settimeout(5)  # a peer that stops reading ends the pair
                    destination.sendall(data)
                    destination.setblocking(False)
                    return
            except OSError:
                pass
            # One side closed: close the pair, as a proxy does.
            self.pairs = [pair for pair in self.pairs if source not in pair]
            for sock in (source, destination):
                self._unregister(sock)
                sock.close()
