"""The ASGI app: every function at `/functions/v1/<name>`, plus `GET /health`,
`GET /openapi.json`, and the operators' console (`GET /status`, the live provenance log
at `/nexus/logs`).

`create_app()` serves every function in `functions/`; `create_app(["agent-heartbeat"])`
is that one function as its own ASGI app, for any ASGI server:

    AERELION_FUNCTIONS=agent-heartbeat uvicorn aerelion.asgi:app
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from aerelion import openapi
from aerelion.config import Settings
from aerelion.console import Console
from aerelion.errors import ApiError
from aerelion.functions import Function, load_functions
from aerelion.queries import QUERIES
from aerelion.runtime import FUNCTIONS_PREFIX, ApiResponse, Endpoint, Runtime, error_response

logger = logging.getLogger("aerelion.app")


class App:
    def __init__(self, functions: list[Function], runtime: Runtime) -> None:
        self.functions = functions
        self.runtime = runtime
        self.endpoints = {f.name: Endpoint(f, runtime) for f in functions}
        self.missing = Endpoint(None, runtime)
        self.console = Console(
            runtime, runtime.settings.database_listen_url or runtime.database.url
        )
        self._openapi: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here
        path: str = scope["path"]
        if path.startswith(FUNCTIONS_PREFIX):
            name = path[len(FUNCTIONS_PREFIX) :].split("/", 1)[0]
            await self.endpoints.get(name, self.missing)(scope, receive, send)
        elif path == "/health":
            await (await self._health())(scope, receive, send)
        elif path == "/openapi.json":
            await ApiResponse(self.openapi())(scope, receive, send)
        elif path == "/status" or path.startswith("/nexus/"):
            await self.console(scope, receive, send)
        else:
            await error_response(ApiError(404, "not_found", "Not found"))(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = openapi.build(self.functions)
        return self._openapi

    async def _health(self) -> ApiResponse:
        try:
            await self.runtime.database.ping()
        except Exception as error:  # any failure means: not healthy
            logger.warning("health check failed: %s", type(error).__name__)
            return ApiResponse(
                ApiError(503, "database_unavailable", "The database is unavailable").body(),
                status_code=503,
            )
        return ApiResponse({"status": "ok", "database": "ok"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.database.open()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.database.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class ConfigurationError(RuntimeError):
    pass


def create_app(
    names: list[str] | None = None,
    *,
    settings: Settings | None = None,
    database_url: str | None = None,
    functions: list[Function] | None = None,
    queries: Mapping[str, str] = QUERIES,
) -> App:
    """An app serving `functions` (default: those in `functions/`, or only `names`)."""
    settings = settings or Settings.load()
    problems = settings.problems() + settings.serving_problems()
    if problems:
        raise ConfigurationError("\n".join(problems))
    url = database_url or settings.database_url
    if not url:
        raise ConfigurationError(
            "DATABASE_URL is not set (`aerelion serve` starts the embedded database itself)"
        )
    if functions is None:
        functions = load_functions(settings.functions_dir, names)
    return App(functions, Runtime.create(settings, url, queries))
