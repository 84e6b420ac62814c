"""Serve the Chalice app over real HTTP on this machine (what `chalice local` does).

The routes are the deployed ones; the store is whatever MLOPS_STORE names, the local
folder by default, so nothing in the cloud is needed. The request handler also plays the
parts API Gateway plays when deployed (infra/template.json): an unknown route is a 404 in
the API's error object, and a response is compressed when the client accepts gzip or
deflate and the body is at least MIN_COMPRESSION_BYTES.
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

from shared.errors import MlopsError
from shared.serving import encoding

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The deployed API's MinimumCompressionSize (infra/template.json): smaller bodies are sent
# as they are, compressing them would cost more than it saves.
MIN_COMPRESSION_BYTES = 1024
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
    """Chalice's local handler, with API Gateway's unknown-route answer and compression."""

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if getattr(self.server, "draining", False):
            self.close_connection = True  # a stopping server answers no more on this one

    def _send_headers(self, headers: dict[str, Any]) -> None:
        if getattr(self.server, "draining", False):
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
        if coding is not None and len(raw) >= MIN_COMPRESSION_BYTES:
            raw = encoding.compress(raw, coding)
            headers = {**headers, "Content-Encoding": coding}
        super()._send_http_response_with_body(code, headers, raw)


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
    return LocalDevServer(
        chalice_app,
        config,
        host,
        port,
        handler_cls=GatewayRequestHandler,
        server_cls=GatewayServer,
    )


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
