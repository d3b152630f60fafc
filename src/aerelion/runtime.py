"""What every function request goes through, in order:

    CORS preflight → method → declared body size → auth policy → body and query
    validation → handler → one JSON answer (or one error shape) → CORS headers →
    the request's log row

The `Runtime` holds what all functions share (database pool, JWT verifier, CORS
allow-list, request log); an `Endpoint` is one function as an ASGI app.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import psycopg_pool
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from aerelion.auth import AuthContext, Principal
from aerelion.config import Settings
from aerelion.cors import Cors
from aerelion.errors import ApiError, from_database, internal_error
from aerelion.functions import Call, Function, LogNote, Reply
from aerelion.queries import QUERIES
from aerelion.request_log import RequestLog
from aerelion.supabase_jwt import JwksCache, JwtVerifier
from aerelion.transactions import Database
from aerelion.validation import parse_body, parse_query, read_body, too_large

logger = logging.getLogger("aerelion.runtime")
FUNCTIONS_PREFIX = "/functions/v1/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ApiResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, default=_json_default, ensure_ascii=False, separators=(",", ":")
        ).encode()


def error_response(error: ApiError) -> Response:
    return ApiResponse(error.body(), status_code=error.status, headers=error.headers)


def to_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, Reply):
        if result.body is None and result.status == 204:
            return Response(status_code=204, headers=result.headers)
        return ApiResponse(result.body, status_code=result.status, headers=result.headers)
    return ApiResponse(result)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    verifier: JwtVerifier
    cors: Cors
    request_log: RequestLog = field(init=False)

    def __post_init__(self) -> None:
        self.request_log = RequestLog(self.database)

    @classmethod
    def create(
        cls, settings: Settings, database_url: str, queries: Mapping[str, str] = QUERIES
    ) -> Runtime:
        jwks_url = settings.get("SUPABASE_JWKS_URL")
        return cls(
            settings=settings,
            database=Database(
                database_url,
                pool_size=settings.db_pool_size,
                transaction_pooler=settings.transaction_pooler,
                queries=queries,
            ),
            verifier=JwtVerifier(
                secret=settings.get("SUPABASE_JWT_SECRET"),
                jwks=JwksCache(jwks_url) if jwks_url else None,
                issuer=settings.get("SUPABASE_JWT_ISSUER"),
            ),
            cors=Cors.from_setting(settings.get("ALLOWED_ORIGINS")),
        )

    def secret(self, name: str) -> str | None:
        return self.settings.get(name)

    async def is_admin(self, claims: Mapping[str, Any]) -> bool:
        """`is_admin()` asked as the caller: the database decides."""
        async with self.database.acting_as("authenticated", claims) as tx:
            return bool(await tx.value("is_admin"))

    async def has_human_signature(self, claims: Mapping[str, Any], headers: Headers) -> bool:
        """`has_human_signature()` asked as the caller, with the request's X-THS-Token."""
        token = headers.get("x-ths-token")
        if not token:
            return False
        async with self.database.acting_as(
            "authenticated", claims, headers={"x-ths-token": token}
        ) as tx:
            return bool(await tx.value("has_human_signature"))


@dataclass
class Outcome:
    """What the request's log row will say."""

    principal: Principal | None = None
    error: ApiError | None = None
    note: LogNote = field(default_factory=LogNote)


class Endpoint:
    """One function as an ASGI app (or, with `function=None`, the answer for a function
    that does not exist)."""

    def __init__(self, function: Function | None, runtime: Runtime) -> None:
        self.function = function
        self.runtime = runtime
        self.name = function.name if function else "unknown-function"
        self.max_body = (function.max_body_bytes if function else None) or (
            runtime.settings.max_body_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        request_id = uuid.uuid4().hex
        outcome = Outcome()
        try:
            response = await self._respond(request, request_id, outcome)
        except ApiError as error:
            outcome.error = error
            response = error_response(error)
        except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as error:
            if isinstance(error, psycopg.Error) and error.sqlstate:
                outcome.error = self._database_error(error, outcome)
            else:
                outcome.error = ApiError(503, "database_unavailable", "The database is unavailable")
            response = error_response(outcome.error)
        except psycopg.Error as error:
            outcome.error = self._database_error(error, outcome)
            response = error_response(outcome.error)
        except Exception:
            logger.exception("%s failed (request %s)", self.name, request_id)
            outcome.error = internal_error()
            response = error_response(outcome.error)
        response.headers["x-request-id"] = request_id
        self.runtime.cors.decorate(request.headers, response.headers)
        await response(scope, receive, send)
        await self._log(request, request_id, response.status_code, started, outcome)

    def _database_error(self, error: psycopg.Error, outcome: Outcome) -> ApiError:
        principal = outcome.principal
        mapped = from_database(
            error, authenticated=principal is not None and principal.kind != "anonymous"
        )
        if mapped.status >= 500:
            logger.error("%s: database error %s", self.name, error.sqlstate)
        return mapped

    async def _respond(self, request: Request, request_id: str, outcome: Outcome) -> Response:
        function = self.function
        if function is None:
            raise ApiError(404, "function_not_found", "No such function")
        method = request.method
        headers = request.headers
        cors = self.runtime.cors
        if Cors.is_preflight(method, headers):
            return Response(
                status_code=204,
                headers=cors.preflight_headers(
                    headers, function.methods, function.policy.request_headers()
                ),
            )
        allow = ", ".join([*function.methods, "OPTIONS"])
        if method == "OPTIONS":
            return Response(status_code=204, headers={"allow": allow})
        if method not in function.methods:
            raise ApiError(
                405, "method_not_allowed", f"{method} is not allowed", headers={"allow": allow}
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise too_large(self.max_body)

        auth = AuthContext(
            headers,
            self.runtime.verifier,
            self.runtime.secret,
            self.runtime.is_admin,
            self.runtime.has_human_signature,
        )
        try:
            principal = await function.policy.authenticate(auth)
        finally:
            outcome.principal = auth.identified
        outcome.principal = principal
        raw = await read_body(request, self.max_body) if method in BODY_METHODS else b""
        body = (
            parse_body(function.body, raw, headers.get("content-type")) if function.body else None
        )
        query = parse_query(function.query, request.query_params) if function.query else None
        if function.rate_limit is not None:  # counted once the request is well formed
            await self._count_call(function, principal, request)
        path = request.url.path
        subpath = path[len(FUNCTIONS_PREFIX) + len(function.name) :]
        call = Call(
            function=function,
            principal=principal,
            body=body,
            query=query,
            raw_body=raw,
            headers=headers,
            query_params=request.query_params,
            method=method,
            subpath=subpath,
            request_id=request_id,
            database=self.runtime.database,
            settings=self.runtime.settings,
            note=outcome.note,
        )
        return to_response(await function.handler(call))

    async def _count_call(self, function: Function, principal: Principal, request: Request) -> None:
        """One hit of this endpoint for the caller: the user, the service, or (anonymous
        and shared-secret callers) the client address; 429 over the limit."""
        assert function.rate_limit is not None
        limit, window = function.rate_limit
        if principal.kind == "user":
            identity = f"user:{principal.user_id}"
        elif principal.kind == "service":
            identity = "service"
        else:
            identity = f"ip:{request.client.host if request.client else 'unknown'}"
        rows = await self.runtime.database.as_owner(
            "hit_rate_limit",
            {
                "identity": identity,
                "key": f"fn:{function.name}",
                "max": limit,
                "window_seconds": window,
            },
        )
        if not rows or not rows[0]["allowed"]:
            retry_after = window - int(time.time()) % window
            raise ApiError(
                429,
                "rate_limited",
                "Too many requests",
                hint=f"retry_after_seconds={retry_after}",
                headers={"retry-after": str(retry_after)},
            )

    async def _log(
        self,
        request: Request,
        request_id: str,
        status: int,
        started: float,
        outcome: Outcome,
    ) -> None:
        error = outcome.error
        note = outcome.note
        details: dict[str, Any] = {"request_id": request_id, "method": request.method}
        if error is not None:
            details["code"] = error.code
        if self.function is None:
            details["path"] = request.url.path[:200]
        details.update(note.details)
        principal = outcome.principal
        await self.runtime.request_log.record(
            function_name=self.name,
            status_code=status,
            duration_ms=round((time.perf_counter() - started) * 1000),
            message=note.message or (f"{error.code}: {error.message}" if error else "OK"),
            level=note.level,
            user_id=principal.user_id if principal else None,
            ip_address=request.client.host if request.client else None,
            details=details,
        )
