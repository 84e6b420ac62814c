"""Serve the Chalice app over real HTTP on this machine (what `chalice local` does).

The routes are the deployed ones; the store is whatever MLOPS_STORE names, the local
folder by default, so nothing in the cloud is needed. The request handler also plays the
parts API Gateway plays when deployed (infra/template.json): an unknown route is a 404 in
the API's error object, and a response is compressed when the client accepts gzip or
deflate and the body is at least MIN_COMPRESSION_BYTES.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
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


class GatewayRequestHandler(ChaliceRequestHandler):
    """Chalice's local handler, with API Gateway's unknown-route answer and compression."""

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
    return LocalDevServer(chalice_app, config, host, port, handler_cls=GatewayRequestHandler)


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
        server.server.server_close()
        thread.join(timeout=5)
