"""Serving a stand-in's ASGI app on 127.0.0.1, on a free port, in a background thread."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT = 10.0


class LoopbackServer:
    """`start()` serves `app` and returns its base URL; `stop()` ends it (in-flight
    requests get a second to finish)."""

    def __init__(self, app: ASGIApp, name: str, *, lifespan: str = "off") -> None:
        self.app = app
        self.name = name
        self.lifespan = lifespan  # "on" for an app that opens its resources at startup
        self.url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def servers(self) -> list[Any]:
        """The listening asyncio servers (their sockets), while running."""
        return list(self._server.servers) if self._server is not None else []

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError(f"the {self.name} is already running")
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan=self.lifespan,
            log_config=None,
            log_level=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=self.name, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"the {self.name} did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None
        self.url = None


class ServedStandIn:
    """A stand-in served by its LoopbackServer (`self._server`): `start()` returns the base
    URL, `stop()` ends it, and `with stand_in:` does both."""

    url: str | None
    _server: LoopbackServer

    def start(self) -> str:
        """Serve on 127.0.0.1 on a free port in a background thread; returns the base URL."""
        self.url = self._server.start()
        return self.url

    def stop(self) -> None:
        self._server.stop()
        self.url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
