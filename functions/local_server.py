"""Serve the Chalice app over real HTTP on this machine (what `chalice local` does).

The routes are the deployed ones; the store is whatever MLOPS_STORE names, the local
folder by default, so nothing in the cloud is needed.
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
from chalice.local import LocalChalice, LocalDevServer, create_local_server

from shared.errors import MlopsError

PROJECT_DIR = Path(__file__).resolve().parent.parent


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
    if isinstance(chalice_app, LocalChalice):
        # create_local_server already gave the app thread-local requests in this
        # process; doing it twice makes an inheritance cycle.
        return LocalDevServer(chalice_app, config, host, port)
    return create_local_server(chalice_app, config, host, port)


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
