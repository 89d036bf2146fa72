"""What every loopback venue fake shares: fault switches (:class:`FaultSwitches`), the
threaded server on an ephemeral port and the handler's plumbing (one request per connection,
JSON answers, dropped and truncated replies). A venue fake subclasses :class:`FaultSwitches`
for its state and endpoints and :class:`FakeHandler` for its routes and fault bodies."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

F = TypeVar("F")


class FaultSwitches:
    """Request counters and fault switches of a fake venue.

    :meth:`inject` queues one fault for each of the next requests under a path prefix; with
    :attr:`fault_cycle` and :attr:`fault_every` set, every ``fault_every``-th request of the
    paths ``cycled`` accepts gets the next fault of the cycle.
    """

    def __init__(self, known: tuple[str, ...], cycled: Callable[[str], bool]) -> None:
        self.known_faults = known
        self.cycled = cycled
        self.fault_cycle: tuple[str, ...] = ()
        self.fault_every = 0
        self.requests: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()
        self._queued: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()

    def inject(self, path_prefix: str, *faults: str) -> None:
        """Serve ``faults`` to the next requests under the prefix, one each."""
        unknown = set(faults) - set(self.known_faults)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known {self.known_faults}")
        with self._lock:
            self._queued[path_prefix].extend(faults)

    def next_fault(self, path: str) -> str | None:
        """Count a request to ``path``; the fault it gets, or None."""
        with self._lock:
            self.requests[path] += 1
            for prefix, queue in self._queued.items():
                if path.startswith(prefix) and queue:
                    return queue.popleft()
            if self.fault_every and self.fault_cycle and self.cycled(path):
                n = sum(count for p, count in self.requests.items() if self.cycled(p))
                if n % self.fault_every == 0:
                    return self.fault_cycle[(n // self.fault_every) % len(self.fault_cycle)]
        return None


class FakeHandler(BaseHTTPRequestHandler):
    """Base handler; ``self.fake`` is the venue the server runs."""

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection, so "drop" hurts one request

    @property
    def fake(self) -> Any:
        return self.server.fake

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        fault = self.fake.next_fault(url.path)
        if fault is not None:
            self.fake.faults_served[fault] += 1
            self.serve_fault(fault, url.path)
            return
        status, body = self.route(url.path, query)
        self.send(status, json.dumps(body).encode())

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        """HTTP status and JSON body of a GET of ``path`` (the venue's endpoints)."""
        raise NotImplementedError

    def serve_fault(self, fault: str, path: str) -> None:
        """Answer a request to ``path`` with ``fault`` (the venue's fault bodies)."""
        raise NotImplementedError

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
