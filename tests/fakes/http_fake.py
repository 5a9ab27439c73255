"""The HTTP plumbing the vendor fakes share: a real server on 127.0.0.1 in a thread, every
request recorded before it is answered, scripted answers (429, 5xx ...) ahead of the normal
ones, and `down()` / `up()` to refuse and accept connections on the same port."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes
    status: int
    """What the fake answered."""

    def json(self) -> Any:
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(self.body.decode()))
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Scripted:
    """An answer: a JSON body (dict), a text body (str) or none."""

    status: int
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class HttpFake:
    """Subclasses answer in `_answer`; tests read `requests` and script answers."""

    json_content_type = "application/json"
    text_content_type = "text/plain"

    def __init__(self, name: str, *, tls: ssl.SSLContext | None = None) -> None:
        self._name = name
        self._tls = tls
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._script: deque[Scripted] = deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _answer(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> Scripted:
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name=f"fake-{self._name}-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def down(self) -> None:
        """Refuse connections (the port stays reserved for `up`)."""
        self.stop()

    def up(self) -> None:
        """Accept connections again on the same port."""
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # --- test API --------------------------------------------------------------------------
    def script(self, *answers: Scripted) -> None:
        """Answer the next requests with these, in order, then normally again."""
        with self._lock:
            self._script.extend(answers)

    def _scripted(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        """Wait until `predicate()` holds (checked after every request) or the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._serve("POST")

            def do_GET(self) -> None:
                self._serve("GET")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = fake._answer(method, self.path, headers, body)
                with fake._lock:  # recorded before answering: the client sees it done after
                    fake._requests.append(
                        RecordedRequest(method, self.path, headers, body, answer.status))
                    fake._lock.notify_all()
                is_json = isinstance(answer.body, dict)
                data = (json.dumps(answer.body) if is_json
                        else answer.body or "").encode()  # type: ignore[union-attr]
                self.send_response(answer.status)
                self.send_header("Content-Type", fake.json_content_type if is_json
                                 else fake.text_content_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read `requests`

        return Handler
