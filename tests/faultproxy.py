"""A TCP proxy on loopback that can refuse, cut and stall the connections it carries.

Put it between PageGrid and PostgreSQL, Redis or the upstream to make an outage real: the
driver sees refused connections, reset sockets or silence, exactly as in a bad night.
"""

from __future__ import annotations

import socket
import threading


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``refuse``/``cut``/``stall``/``heal`` on command."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._refusing = False
        self._stalled = threading.Event()
        self._stalled.set()  # set = flowing
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- faults ------------------------------------------------------------------------------

    def refuse(self) -> None:
        """New connections are closed at once (the server is down)."""
        self._refusing = True

    def cut(self) -> None:
        """Close every open connection, both ways (the server restarted)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def stall(self) -> None:
        """Stop forwarding bytes; sockets stay open (a network partition)."""
        self._stalled.clear()

    def heal(self) -> None:
        """Back to normal."""
        self._refusing = False
        self._stalled.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    # -- plumbing ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._stalled.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
