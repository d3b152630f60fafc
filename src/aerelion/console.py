"""The operators' console beside the functions: `GET /status`, and the live provenance log
at `/nexus/logs`.

The page is static; everything it shows comes from SQL functions run as the signed-in
admin (`provenance_log()`, `provenance_summary()`), so RLS and the admin check hold as
for any API call. Live rows arrive over Server-Sent Events fed by LISTEN/NOTIFY (a NOTIFY
per inserting statement on `edge_function_logs`), never by polling. A browser's
EventSource cannot send an Authorization header and a JWT must never sit in a URL, so the
page trades its JWT for a one-time ticket (`POST /nexus/logs/ticket`, 60 s) and opens
`GET /nexus/logs/stream?ticket=…`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aerelion.auth import AuthContext, Principal, parse_policy
from aerelion.errors import ApiError, from_database
from aerelion.runtime import ApiResponse, Runtime, error_response

STATIC = Path(__file__).with_name("static")
PAGES = {
    "/nexus/logs": ("provenance.html", "text/html; charset=utf-8"),
    "/nexus/logs/app.js": ("provenance.js", "text/javascript; charset=utf-8"),
    "/nexus/logs/app.css": ("provenance.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
KEEPALIVE_S = 15.0  # a comment line keeps proxies from closing an idle stream
MAX_STREAMS = 32  # concurrent live pages (each holds one LISTEN connection)
FILTERS = ("level", "function", "agent")


def ticket_hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


class Console:
    def __init__(self, runtime: Runtime, listen_url: str) -> None:
        self.runtime = runtime
        self.listen_url = listen_url
        self.admin = parse_policy("admin")
        self.operator = parse_policy("admin|service")
        self.streams = asyncio.Semaphore(MAX_STREAMS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._route(request)
        except ApiError as error:
            response = error_response(error)
        except psycopg.Error as error:
            response = error_response(from_database(error, authenticated=True))
        await response(scope, receive, send)

    async def _route(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        if path in PAGES and method == "GET":
            name, kind = PAGES[path]
            return Response((STATIC / name).read_bytes(), media_type=kind, headers=PAGE_HEADERS)
        routes = {
            ("/status", "GET"): self._status,
            ("/nexus/logs/ticket", "POST"): self._ticket,
            ("/nexus/logs/rows", "GET"): self._rows,
            ("/nexus/logs/summary", "GET"): self._summary,
            ("/nexus/logs/stream", "GET"): self._stream,
        }
        handler = routes.get((path, method))
        if handler is None:
            if any(route == path for route, _ in routes) or path in PAGES:
                raise ApiError(405, "method_not_allowed", "Method not allowed")
            raise ApiError(404, "not_found", "Not found")
        return await handler(request)

    async def _principal(self, request: Request, policy: Any) -> Principal:
        runtime = self.runtime
        context = AuthContext(
            request.headers,
            runtime.verifier,
            runtime.secret,
            runtime.is_admin,
            runtime.has_human_signature,
        )
        return await policy.authenticate(context)

    async def _status(self, request: Request) -> Response:
        principal = await self._principal(request, self.operator)
        async with self.runtime.database.acting_as(principal.role, principal.claims) as tx:
            return ApiResponse(await tx.value("system_status"))

    async def _ticket(self, request: Request) -> Response:
        principal = await self._principal(request, self.admin)
        ticket = secrets.token_urlsafe(32)
        async with self.runtime.database.acting_as(principal.role, principal.claims) as tx:
            expires_at = await tx.value(
                "issue_log_stream_ticket", {"token_hash": ticket_hash(ticket)}
            )
        return ApiResponse(
            {"ticket": ticket, "expires_at": expires_at}, headers={"cache-control": "no-store"}
        )

    async def _rows(self, request: Request) -> Response:
        principal = await self._principal(request, self.admin)
        params = page_params(request.query_params)
        async with self.runtime.database.acting_as(principal.role, principal.claims) as tx:
            return ApiResponse({"rows": await tx.all("provenance_log", params)})

    async def _summary(self, request: Request) -> Response:
        principal = await self._principal(request, self.admin)
        async with self.runtime.database.acting_as(principal.role, principal.claims) as tx:
            return ApiResponse(await tx.value("provenance_summary"))

    async def _stream(self, request: Request) -> Response:
        ticket = request.query_params.get("ticket", "")
        params = page_params(request.query_params)
        if not ticket or len(ticket) > 200:
            raise ApiError(401, "invalid_ticket", "A stream ticket is required")
        async with self.runtime.database.as_service() as tx:
            user_id = await tx.value(
                "redeem_log_stream_ticket", {"token_hash": ticket_hash(ticket)}
            )
        if self.streams.locked():
            raise ApiError(503, "too_many_streams", "Too many live pages are open")
        claims = {"role": "authenticated", "sub": str(user_id), "aud": "authenticated"}
        return StreamingResponse(
            self._events(request, claims, params),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _events(
        self, request: Request, claims: dict[str, Any], params: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        """New rows as `rows` events (oldest first) after each NOTIFY, and the header's
        counts as a `summary` event; a keep-alive comment when nothing happens."""
        async with self.streams:
            listener = await psycopg.AsyncConnection.connect(self.listen_url, autocommit=True)
            try:
                await listener.execute("LISTEN edge_function_logs")
                after = params["after"]
                if after is None:
                    after = await self._newest_seq(claims, params)
                yield b"retry: 1000\n\n"
                while not await request.is_disconnected():
                    rows, summary = await self._since(claims, params, after)
                    if rows:
                        after = rows[-1]["seq"]
                        yield _event("rows", rows)
                        yield _event("summary", summary)
                    notified = False
                    async for _ in listener.notifies(timeout=KEEPALIVE_S, stop_after=1):
                        notified = True
                    if not notified:
                        yield b": keep-alive\n\n"
            finally:
                await listener.close()

    async def _newest_seq(self, claims: dict[str, Any], params: dict[str, Any]) -> int:
        async with self.runtime.database.acting_as("authenticated", claims) as tx:
            newest = await tx.all("provenance_log", {**params, "after": None, "limit": 1})
        return newest[0]["seq"] if newest else 0

    async def _since(
        self, claims: dict[str, Any], params: dict[str, Any], after: int
    ) -> tuple[list[dict[str, Any]], Any]:
        async with self.runtime.database.acting_as("authenticated", claims) as tx:
            rows = await tx.all("provenance_log", {**params, "before": None, "after": after})
            summary = await tx.value("provenance_summary") if rows else None
        return rows, summary


def page_params(query: Mapping[str, str]) -> dict[str, Any]:
    """The provenance_log parameters from a query string (the database checks values)."""

    def number(name: str) -> int | None:
        raw = query.get(name)
        if raw in (None, ""):
            return None
        if not raw.isdigit() or len(raw) > 18:
            raise ApiError(400, "invalid_request", f"{name} must be a sequence number")
        return int(raw)

    limit = number("limit")
    params: dict[str, Any] = {
        "before": number("before"),
        "after": number("after"),
        "limit": 100 if limit is None else limit,
        "since": None,
    }
    for name in FILTERS:
        value = query.get(name) or None
        if value is not None and len(value) > 100:
            raise ApiError(400, "invalid_request", f"{name} is too long")
        params[name] = value
    return params


def _event(name: str, data: Any) -> bytes:
    payload = json.dumps(data, default=str, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()
