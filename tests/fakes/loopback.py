"""What every loopback venue fake shares: the threaded server on an ephemeral port and the
handler's plumbing (one request per connection, JSON answers, dropped and truncated replies).
A venue fake subclasses :class:`FakeHandler` for its routes and fault bodies."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

F = TypeVar("F")


class FakeHandler(BaseHTTPRequestHandler):
    """Base handler; ``self.fake`` is the venue the server runs."""

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection, so "drop" hurts one request

    @property
    def fake(self) -> Any:
        return self.server.fake

    def log_message(self, *_: Any) -> None:  # keep pytest output quiet
        pass

    def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drop(self) -> None:
        """Close the connection without a response."""
        self.close_connection = True
        self.connection.shutdown(2)

    def truncate(self, head: bytes) -> None:
        """Promise a 5000-byte JSON body, send ``head`` of it, close the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "5000")
        self.end_headers()
        self.wfile.write(head)
        self.wfile.flush()
        self.connection.shutdown(2)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: Any, handler: type[FakeHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.fake = fake


class LoopbackServer(Generic[F]):
    """Runs ``fake`` behind ``handler`` on 127.0.0.1 with an ephemeral port in a background
    thread (a context manager)."""

    def __init__(self, fake: F, handler: type[FakeHandler]) -> None:
        self.fake = fake
        self._server = _Server(fake, handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackServer[F]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
