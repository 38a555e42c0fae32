"""Network fixtures for streaming reads: a TCP proxy that cuts or slows connections, and a small
HTTP server with ``Range`` support. Both run in threads on 127.0.0.1 and count what passes.

``Proxy(target_port, delay=0.02, cut_after=None, cut="once")`` forwards ``127.0.0.1:proxy.port`` to
``127.0.0.1:target_port`` (the S3 server of ``tests/s3server.py``, or a ``RangeServer``):
``delay`` seconds are added before each burst a client sends (one request, as a latency), and a
connection that has carried ``cut_after`` bytes from the server is reset there, mid-response:
the first such connection only (``cut="once"``) or every one (``cut="always"``). ``connections``,
``cuts``, ``bytes_down`` and ``bytes_up`` count what went through; the settings may be changed
between requests.

``RangeServer(folder)`` serves the files under ``folder`` at ``http://127.0.0.1:PORT/...`` with
HTTP/1.1 keep-alive, ``HEAD``, and ``Range: bytes=a-b`` (206) requests, and records each request as
``(method, path, range header or None, body bytes sent)`` in ``requests``.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

_CHUNK = 64 << 10


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port`` that can add latency and drop connections.

    Parameters
    ----------
    target_port : int
        The port on 127.0.0.1 that connections are forwarded to.
    delay : float
        Seconds added before each burst of bytes a client sends (a request), never to responses.
    cut_after : int or None
        Reset a connection once it has carried this many bytes from the server (None: never);
        ``cut`` says which: ``"once"`` (the first connection that gets that far) or ``"always"``.
    """

    def __init__(self, target_port: int, *, delay: float = 0.0, cut_after: int | None = None, cut: str = "once"):
        if cut not in ("once", "always"):
            raise ValueError(f"cut must be 'once' or 'always', got {cut!r}")
        self.target_port, self.delay, self.cut_after, self.cut = target_port, delay, cut_after, cut
        self.connections = self.cuts = self.bytes_down = self.bytes_up = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the proxy as an S3 ``endpoint_url`` or an HTTP origin."""
        return f"http://127.0.0.1:{self.port}"

    def reset_counts(self) -> None:
        """Zero ``connections``, ``cuts``, ``bytes_down`` and ``bytes_up``."""
        with self._lock:
            self.connections = self.cuts = self.bytes_down = self.bytes_up = 0

    def close(self) -> None:
        """Stop accepting and drop every open connection."""
        self._closed = True
        self._listener.close()
        with self._lock:
            socks, self._open = list(self._open), set()
        for s in socks:
            _drop(s)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _drop(client)
                continue
            with self._lock:
                self.connections += 1
                self._open.update((client, server))
            down = [0]  # bytes from the server on this connection
            threading.Thread(target=self._pump_up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client, down), daemon=True).start()

    def _pump_up(self, client: socket.socket, server: socket.socket) -> None:
        """Client -> server, ``delay`` before each burst."""
        try:
            while data := client.recv(_CHUNK):
                if self.delay:
                    time.sleep(self.delay)
                server.sendall(data)
                with self._lock:
                    self.bytes_up += len(data)
        except OSError:
            pass
        finally:
            self._end(client, server)

    def _pump_down(self, server: socket.socket, client: socket.socket, down: list[int]) -> None:
        """Server -> client, resetting the connection at ``cut_after`` bytes when it is to be cut."""
        try:
            while data := server.recv(_CHUNK):
                limit = self.cut_after
                if limit is not None and down[0] + len(data) > limit and self._take_cut():
                    keep = max(0, limit - down[0])
                    client.sendall(data[:keep])
                    with self._lock:
                        self.bytes_down += keep
                    _drop(client)  # RST: the client sees a connection reset mid-body
                    break
                client.sendall(data)
                down[0] += len(data)
                with self._lock:
                    self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            self._end(client, server)

    def _take_cut(self) -> bool:
        """Whether this connection is cut: every time, or the first time only."""
        with self._lock:
            if self.cut == "once" and self.cuts:
                return False
            self.cuts += 1
            return True

    def _end(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)
        for s in socks:
            _drop(s, reset=False)


def _drop(sock: socket.socket, *, reset: bool = True) -> None:
    """Shut ``sock`` down (which also wakes a thread blocked reading it) and close it; with ``reset``,
    abortively (SO_LINGER 0: the close sends an RST)."""
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as object stores and CDNs answer

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        root: Path = self.server.root
        rel = unquote(urlparse(self.path).path).lstrip("/")
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.server.record(self.command, rel, None, 0)
            return
        data = path.read_bytes()
        want = self.headers.get("Range")
        start, end = 0, len(data)
        if want:
            first, _, last = want.removeprefix("bytes=").partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(len(data), int(last) + 1) if first and last else len(data)
            if start >= len(data) or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.server.record(self.command, rel, want, 0)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/x-tar" if rel.endswith(".tar") else "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        sent = 0
        if body:
            try:
                for at in range(start, end, _CHUNK):
                    self.wfile.write(data[at : min(at + _CHUNK, end)])
                    sent += min(at + _CHUNK, end) - at
            except OSError:  # the client went away mid-body
                self.close_connection = True
        self.server.record(self.command, rel, want, sent)

    def log_message(self, *args) -> None:  # quiet
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False  # kept-alive connections would hold close() until their clients hang up
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:  # a client that went away: not news
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RangeServer:
    """The files under ``folder`` over HTTP on 127.0.0.1, with ``Range`` requests; ``url`` is its origin."""

    def __init__(self, folder):
        self._http = _Server(("127.0.0.1", 0), _RangeHandler)
        self._http.root = Path(folder).resolve()
        self._http.record = self._record
        self.port = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, str | None, int]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._http.serve_forever, name="range-server", daemon=True).start()

    def _record(self, method: str, path: str, want: str | None, sent: int) -> None:
        with self._lock:
            self.requests.append((method, path, want, sent))

    def ranged(self, name: str) -> list[tuple[str, int]]:
        """``(range, bytes sent)`` of each ranged GET of the file ``name`` (its path under the folder)."""
        with self._lock:
            return [
                (want, sent) for method, path, want, sent in self.requests if path == name and method == "GET" and want
            ]

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> RangeServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
