"""Serve the Chalice app over real HTTP on this machine (what `chalice local` does).

The routes are the deployed ones; the store is whatever MLOPS_STORE names, the local
folder by default, so nothing in the cloud is needed. The request handler also plays the
parts API Gateway plays when deployed (infra/template.json): an unknown route is a 404 in
the API's error object, and an inference response is compressed when the client accepts
gzip or deflate and the body is at least MIN_COMPRESSION_BYTES.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    ForbiddenError,
    LocalChalice,
    LocalDevServer,
    LocalGatewayException,
    ThreadedHTTPServer,
)

from shared.errors import MlopsError, quoted
from shared.serving import encoding

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The deployed API's MinimumCompressionSize (infra/template.json): smaller bodies are sent
# as they are, compressing them would cost more than it saves.
MIN_COMPRESSION_BYTES = 1024
# API Gateway's payload limit: a larger Content-Length is refused before its body is read.
GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024
UNKNOWN_ROUTE = (
    b'{"error": "no such route: the API serves /v2/... (Open Inference Protocol) and '
    b'/models/{name}/predict; see the README"}'
)


# How long a stopping server waits for the requests it is answering (a cold model load and a
# 10,000-row batch take well under this).
DRAIN_SECONDS = 30.0


class GatewayServer(ThreadedHTTPServer):
    """Chalice's threaded server, which can stop without dropping what it has answered.

    `drain` (after serve_forever has returned) refuses new connections, lets the requests
    being answered finish, and ends idle keep-alive connections: once it returns, no thread
    answers anything more, so a capture flushed after it holds every answered request.
    Without it, keep-alive handler threads went on answering after the final flush, and
    their rows were lost (8 of 1,377 requests answered under load).
    """

    block_on_close = False  # drain() waits, with a deadline; server_close() must not hang
    # http.server's backlog of 5 reset connections when 16 clients connected at once.
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self.draining = False
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._connections_lock:
            refused = self.draining
            if not refused:
                self._connections[request] = thread
        if refused:
            self.shutdown_request(request)
            return
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Finish the requests in flight and close every connection; False if time ran out."""
        with self._connections_lock:
            self.draining = True
            open_connections = dict(self._connections)
        for connection in open_connections:
            # Ends the read side only: an idle keep-alive connection's handler sees the end
            # of its stream and stops, while a request already read is answered as usual.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + timeout
        for thread in open_connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in open_connections.values())


class GatewayRequestHandler(ChaliceRequestHandler):
    """Chalice's local handler, answering as the deployed API does.

    API Gateway's parts: an unknown route is a 404 in the API's error object, and an
    inference response is compressed. And what the HTTP layer itself refuses (a malformed
    request line or Content-Length, an unknown method) is the same JSON error object, not
    http.server's HTML page or a closed connection.
    """

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if getattr(self.server, "draining", False):
            self.close_connection = True  # a stopping server answers no more on this one

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals, as the API's JSON error object."""
        self.log_error("code %d, message %s", code, message)
        if code == 501:
            text = (
                f"method {quoted(self.command)} is not supported; the API takes GET and POST "
                "(see the README)"
            )
        else:
            # http.server quotes the request line in its messages: keep only a short piece.
            text = (message or self.responses.get(code, ("error",))[0])[:200]
        self._send_json_error(code, text)

    def _send_json_error(self, code: int, message: str) -> None:
        # The connection is closed after: its next bytes may be this request's unread body.
        self.close_connection = True
        self._send_http_response(
            code,
            {"Content-Type": "application/json", "Connection": "close"},
            json.dumps({"error": message}).encode(),
        )

    def _framing_problem(self) -> tuple[int, str] | None:
        """Why this request's body cannot be read as sent, if it cannot."""
        if self.headers.get("Transfer-Encoding") is not None:
            return 411, "send the body with a Content-Length, not chunked Transfer-Encoding"
        lengths = {
            _header_text(value).strip(" \t")
            for value in self.headers.get_all("Content-Length") or []
        }
        if len(lengths) > 1:
            return (
                400,
                f"Content-Length is repeated with different values {quoted(sorted(lengths))}",
            )
        length = next(iter(lengths), "0")
        if not (length.isascii() and length.isdigit()):
            return 400, f"Content-Length {quoted(length)} must be a number of bytes"
        if len(length) > 9 or int(length) > GATEWAY_MAX_BODY_BYTES:
            return 413, (
                f"Content-Length {quoted(length)} is over the {GATEWAY_MAX_BODY_BYTES}-byte "
                "limit (split the batch into several requests)"
            )
        return None

    def _parse_payload(self) -> tuple[dict[str, str], bytes | None]:
        length = int((self.headers.get("Content-Length") or "0").strip(" \t"))
        body = self.rfile.read(length) if length > 0 else None
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            text = _header_text(value)
            # A field repeated means its values joined by commas (RFC 9110, 5.3), as the
            # deployed API passes them on; not silently the first one.
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        headers.pop("content-length", None)
        if body is not None:
            headers["content-length"] = str(len(body))
        return headers, body

    def _generic_handle(self) -> None:
        problem = self._framing_problem()
        if problem is not None:
            self._send_json_error(*problem)
            return
        super()._generic_handle()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def _send_headers(self, headers: dict[str, Any]) -> None:
        if getattr(self.server, "draining", False) and "Connection" not in headers:
            self.send_header("Connection", "close")  # so the client does not reuse it
        super()._send_headers(headers)

    def _send_error_response(self, error: LocalGatewayException) -> None:
        if isinstance(error, ForbiddenError):
            # No route matched: API Gateway's MISSING_AUTHENTICATION_TOKEN, which the
            # deployed template answers as this 404.
            self._send_http_response(404, {"Content-Type": "application/json"}, UNKNOWN_ROUTE)
            return
        super()._send_error_response(error)

    def _send_http_response_with_body(
        self, code: int, headers: dict[str, Any], body: str | bytes
    ) -> None:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        coding = encoding.accepted_coding(self.headers.get("Accept-Encoding"))
        # As API Gateway does: an answer that names its Content-Encoding is left as it is
        # (app.py names "identity" on every answer but inference ones, as Triton compresses
        # only those: tritonclient's aio client reads gzip metadata as garbage).
        named = any(name.lower() == "content-encoding" for name in headers)
        if coding is not None and len(raw) >= MIN_COMPRESSION_BYTES and not named:
            raw = encoding.compress(raw, coding)
            headers = {**headers, "Content-Encoding": coding}
        self.send_response(code)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)
        if self.command != "HEAD":  # a HEAD answer's body would be read as the next answer
            self.wfile.write(raw)


def _header_text(value: str) -> str:
    """A header value as the UTF-8 its bytes are (http.server decodes them as latin-1)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def load_app() -> Any:
    """The Chalice app object of app.py in the project checkout."""
    if not (PROJECT_DIR / "app.py").is_file():
        raise MlopsError(f"no app.py in {PROJECT_DIR}: run from a checkout of the project")
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    return importlib.import_module("app").app


def build_server(host: str, port: int) -> LocalDevServer:
    """A Chalice local server for the `local` stage of .chalice/config.json."""
    chalice_app = load_app()
    config = Config.create(
        chalice_stage="local",
        project_dir=str(PROJECT_DIR),
        config_from_disk=json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text()),
        chalice_app=chalice_app,
    )
    if not isinstance(chalice_app, LocalChalice):
        # What chalice's create_local_server does, which takes no handler class: give the
        # app thread-local requests (once per process: twice makes an inheritance cycle).
        CustomLocalChalice.__bases__ = (LocalChalice, chalice_app.__class__)
        chalice_app.__class__ = CustomLocalChalice
    server = LocalDevServer(
        chalice_app,
        config,
        host,
        port,
        handler_cls=GatewayRequestHandler,
        server_cls=GatewayServer,
    )
    # Chalice prints "Serving on http://host:port" with the port asked for: port 0 (any
    # free port) would print 0. The socket is bound by now: print the one it got.
    server.port = server.server.server_address[1]
    return server


def stop_server(server: LocalDevServer, timeout: float = DRAIN_SECONDS) -> bool:
    """Drain a server whose serve_forever has returned, then close it; see GatewayServer."""
    http_server = server.server
    drained = http_server.drain(timeout) if isinstance(http_server, GatewayServer) else True
    http_server.server_close()
    return drained


@contextmanager
def running_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread; yields the base URL (port 0: any free port)."""
    server = build_server(host, port)
    address = server.server.server_address
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address[0]}:{address[1]}"
    finally:
        server.server.shutdown()
        thread.join(timeout=5)
        stop_server(server)
