"""Loopback receivers of alerts speaking each wire format: a JSON webhook and Telegram's Bot API.

- :class:`WebhookReceiver`: accepts ``POST`` of a JSON body on any path and answers ``200``
  with ``{"ok": true}`` (as incoming-webhook services do), keeping every body it received.
- :class:`TelegramReceiver`: the Bot API's ``POST /bot<token>/sendMessage`` with ``chat_id``
  and ``text`` (as a JSON body or a form). A known token and chat get ``200`` and
  ``{"ok": true, "result": <Message>}``; as Telegram answers, an unknown token gets ``401``
  ``{"ok": false, "error_code": 401, "description": "Unauthorized"}``, an unknown method
  ``404 Not Found``, an unknown chat ``400 Bad Request: chat not found``, an empty text
  ``400 Bad Request: message text is empty`` and more than 4096 characters ``400 Bad Request:
  message is too long``.

Faults are queued per receiver (:meth:`Receiver.inject`), one per following request:
``"http_502"`` (nginx's HTML 502 page, what Telegram's front end serves while restarting),
``"http_500"``, ``"http_429"`` (Telegram: ``{"ok": false, "error_code": 429, "description":
"Too Many Requests: retry after N", "parameters": {"retry_after": N}}``; the webhook: a
``Retry-After: N`` header), ``"http_400"``, ``"slow"`` (the answer comes after
``slow_seconds``) and ``"drop"`` (the connection is closed without an answer). A receiver that
is down is a port nothing listens on: :func:`closed_port_url`.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

FAULTS = ("http_500", "http_502", "http_429", "http_400", "slow", "drop")
TEXT_LIMIT = 4096
_BOT_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
_NGINX_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center>"
              b"<h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
              b"</html>\r\n")


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """A loopback HTTP receiver on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, *, slow_seconds: float = 5.0, retry_after: int = 1) -> None:
        self.requests: list[Received] = []
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(self)
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, *faults: str) -> None:
        """Answer the next requests with ``faults``, one each, in order."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        with self._lock:
            self._faults.extend(faults)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # a slow answer still waiting returns now
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- request handling ------------------------------------------------------------------
    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def handle(self, request: Received) -> _Answer | None:
        """The answer to ``request`` (None: drop the connection)."""
        with self._lock:
            self.requests.append(request)
        fault = self._next_fault()
        if fault == "drop":
            return None
        if fault == "slow":
            self._closing.wait(self.slow_seconds)
        elif fault is not None:
            return self.fault_answer(fault)
        return self.answer(request)

    def answer(self, request: Received) -> _Answer:
        raise NotImplementedError

    def fault_answer(self, fault: str) -> _Answer:
        raise NotImplementedError


class WebhookReceiver(Receiver):
    """A JSON webhook: ``POST`` with ``Content-Type: application/json`` gets ``{"ok": true}``."""

    def answer(self, request: Received) -> _Answer:
        if request.method != "POST":
            return _json(405, {"error": "method not allowed"})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _json(415, {"error": "expected application/json"})
        try:
            json.loads(request.body)
        except ValueError:
            return _json(400, {"error": "invalid JSON"})
        return _json(200, {"ok": True})

    def fault_answer(self, fault: str) -> _Answer:
        if fault == "http_502":
            return _Answer(502, _NGINX_502, {"Content-Type": "text/html"})
        if fault == "http_429":
            return _Answer(429, b'{"error": "rate limited"}',
                           {"Content-Type": "application/json",
                            "Retry-After": str(self.retry_after)})
        status = int(fault.split("_")[1])
        return _json(status, {"error": f"injected {status}"})

    def payloads(self) -> list[Any]:
        """The JSON bodies received, in order."""
        return [r.json() for r in self.requests if r.method == "POST"]


class TelegramReceiver(Receiver):
    """Telegram's Bot API ``sendMessage`` for the bot ``token`` and the chats ``chat_ids``."""

    def __init__(self, token: str, chat_ids: tuple[str, ...] = ("424242",), **kwargs: Any
                 ) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.chat_ids = chat_ids
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.sent: list[dict[str, Any]] = []  # the messages accepted

    def answer(self, request: Received) -> _Answer:
        match = _BOT_PATH.match(request.path.split("?", 1)[0])
        if match is None:
            return _error(404, "Not Found")
        if match["token"] != self.token:
            return _error(401, "Unauthorized")
        if match["method"] != "sendMessage":
            return _error(404, "Not Found")
        params = _params(request)
        chat_id = str(params.get("chat_id", ""))
        text = params.get("text")
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        if chat_id not in self.chat_ids:
            return _error(400, "Bad Request: chat not found")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > TEXT_LIMIT:
            return _error(400, "Bad Request: message is too long")
        with self._lock:
            message = {
                "message_id": len(self.sent) + 1,
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "TradeCore",
                         "username": "tradecore_alerts_bot"},
                "chat": {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id,
                         "type": "private"},
                "date": int(time.time()),
                "text": text,
            }
            self.sent.append(message)
        return _json(200, {"ok": True, "result": message})

    def fault_answer(self, fault: str) -> _Answer:
        if fault == "http_502":
            return _Answer(502, _NGINX_502, {"Content-Type": "text/html"})
        if fault == "http_429":
            return _json(429, {"ok": False, "error_code": 429,
                               "description": f"Too Many Requests: retry after "
                                              f"{self.retry_after}",
                               "parameters": {"retry_after": self.retry_after}})
        if fault == "http_400":
            return _error(400, "Bad Request: injected")
        return _error(500, "Internal Server Error")


def closed_port_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (a receiver that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _params(request: Received) -> dict[str, Any]:
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    query = parse_qs(request.body.decode(errors="replace"))
    return {k: v[0] for k, v in query.items()}


def _json(status: int, body: Any) -> _Answer:
    return _Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _error(code: int, description: str) -> _Answer:
    return _json(code, {"ok": False, "error_code": code, "description": description})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Received(self.command, self.path,
                           {k.lower(): v for k, v in self.headers.items()}, body)
        answer = self.server.receiver.handle(request)
        if answer is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_POST = _serve
    do_GET = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # quiet: test output shows only what the code under test logs
