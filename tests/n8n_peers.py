"""Real n8n nodes as test peers: the install `.ci/run` makes in `.aerelion/n8n` (from the
committed `tests/peers/n8n/package.json` and lockfile), started on ephemeral loopback ports
with their own user folders and task-runner broker ports, ready when `/rest/settings`
answers JSON, each with an owner and an API key made with three HTTP calls, and stopped by
PID at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
INSTALL = Path(os.environ.get("AERELION_N8N_DIR", REPO / ".aerelion" / "n8n"))
N8N_BIN = INSTALL / "node_modules" / "n8n" / "bin" / "n8n"
READY_TIMEOUT = 120.0
OWNER = {
    "email": "owner@example.com",
    "firstName": "Test",
    "lastName": "Owner",
    "password": "Passw0rd-Test1",
}


def installed() -> bool:
    return N8N_BIN.is_file() and shutil.which("node") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RealNode:
    name: str
    port: int
    broker_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    api_key: str = ""
    started_in: float = 0.0
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "n8n.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "N8N_USER_FOLDER": str(self.folder),
            "N8N_PORT": str(self.port),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_HOST": "127.0.0.1",
            "N8N_PROTOCOL": "http",
            "WEBHOOK_URL": f"{self.url}/",
            "DB_TYPE": "sqlite",
            "DB_SQLITE_POOL_SIZE": "4",
            "N8N_RUNNERS_BROKER_PORT": str(self.broker_port),
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_HIRING_BANNER_ENABLED": "false",
            "EXTERNAL_FRONTEND_HOOKS_URLS": "",
            "N8N_SECURE_COOKIE": "false",
            "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "true",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["node", str(N8N_BIN), "start"],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its runner child is stopped with it
            )

    def wait_ready(self, started: float) -> None:
        """Until `/rest/settings` answers JSON (not "n8n is starting up", not 404 HTML)."""
        deadline = started + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"n8n {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                response = httpx.get(f"{self.url}/rest/settings", timeout=2)
                if response.status_code == 200 and "data" in response.json():
                    self.started_in = time.monotonic() - started
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"n8n {self.name} was not ready within {READY_TIMEOUT:g}s")

    def make_api_key(self) -> str:
        """Owner setup (its cookie), the scopes, an API key: n8n-local.md's three calls."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            setup = client.post("/rest/owner/setup", json=OWNER)
            setup.raise_for_status()
            scopes = client.get("/rest/api-keys/scopes").json()["data"]
            made = client.post(
                "/rest/api-keys", json={"label": "ci", "expiresAt": None, "scopes": scopes}
            )
            made.raise_for_status()
            self.api_key = made.json()["data"]["rawApiKey"]
        return self.api_key

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the main PID's group: n8n and its runner
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class RealNodes:
    """`count` nodes started in parallel; `close()` stops them and removes their folders."""

    def __init__(self, count: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aerelion-n8n-"))
        self.nodes = [
            RealNode(f"node{i}", free_port(), free_port(), self.root / f"node{i}")
            for i in range(count)
        ]
        self.started_in = 0.0

    def start(self) -> list[RealNode]:
        started = time.monotonic()
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready(started)
                node.make_api_key()
        except BaseException:
            self.close()
            raise
        self.started_in = time.monotonic() - started
        return self.nodes

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)
