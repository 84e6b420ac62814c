"""An HTTP proxy in front of a real S3 server that answers as other servers were measured to.

Each quirk reproduces, over real HTTP, what issue 16 measured on Ceph RGW 16.2, so that the
store's tolerances and the store check are tested against the answers such a server gives:
- ``ignore_if_none_match``: a versioned RGW bucket ignores If-None-Match (the header is
  dropped before it reaches the server, so every create-only write succeeds);
- ``refuse_quoted_if_match``: a plain RGW bucket answers 412 to If-Match with the ETag
  quoted as S3 returns it, and honours the unquoted form;
- ``refuse_if_match``: a versioned RGW bucket never lets If-Match succeed;
- ``lost_race_500``: RGW answers a lost conditional write with 500 UnknownError, not 412.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


@dataclass
class Quirks:
    """Which measured behaviours the proxy reproduces (all off: a plain forwarder)."""

    ignore_if_none_match: bool = False
    refuse_quoted_if_match: bool = False
    refuse_if_match: bool = False
    lost_race_500: bool = False


def _error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


class QuirkyS3Proxy:
    """A loopback proxy to `upstream` with `quirks`; a context manager that starts and stops it."""

    def __init__(self, upstream: str, quirks: Quirks) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.quirks = quirks
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> QuirkyS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as boto3 uses

            def log_message(self, format: str, *args: object) -> None:
                pass  # the tests' output is what they assert, not a request log

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in HOP_BY_HOP
                }
                quirks = proxy.quirks
                conditional = self.command == "PUT" and (
                    "If-Match" in self.headers or "If-None-Match" in self.headers
                )
                if self.command == "PUT" and quirks.ignore_if_none_match:
                    headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
                if_match = self.headers.get("If-Match")
                refused = quirks.refuse_if_match or (
                    quirks.refuse_quoted_if_match and if_match is not None and if_match[:1] == '"'
                )
                if self.command == "PUT" and if_match is not None and refused:
                    self._answer(412, _error("PreconditionFailed", "refused"), {})
                    return
                connection = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    status = response.status
                    reply = {
                        name: value
                        for name, value in response.getheaders()
                        if name.lower() not in HOP_BY_HOP | {"content-length"}
                    }
                finally:
                    connection.close()
                if conditional and status == 412 and quirks.lost_race_500:
                    status, answer = 500, _error("UnknownError", "")
                    reply = {}
                self._answer(status, answer, reply)

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _relay

        return Handler
