"""Reaching the configured Hostinger API from the worker and the functions alike, and what
its failures mean for a client of ours."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from aerelion.config import Settings
from aerelion.errors import ApiError
from aerelion.hostinger import HostingerClient, HostingerError
from aerelion.registry import registry_value
from aerelion.transactions import Database

ClientFactory = Callable[[], AbstractAsyncContextManager[HostingerClient]]


def hostinger_factory(settings: Settings, database: Database) -> ClientFactory | None:
    """Clients for the API at `hostinger/api_base` (HOSTINGER_API_BASE wins), or None when
    no HOSTINGER_API_TOKEN is configured."""
    token = settings.get("HOSTINGER_API_TOKEN")
    if token is None:
        return None

    @asynccontextmanager
    async def connect() -> AsyncIterator[HostingerClient]:
        async with database.as_service() as tx:
            base_url = await registry_value(tx, settings, "hostinger", "api_base")
        async with HostingerClient(base_url, token) as client:
            yield client

    return connect


def require_hostinger(settings: Settings, database: Database) -> ClientFactory:
    """The client factory, or 503 (fail closed) when no API token is configured."""
    factory = hostinger_factory(settings, database)
    if factory is None:
        raise ApiError(503, "not_configured", "HOSTINGER_API_TOKEN is not configured")
    return factory


def upstream_error(error: HostingerError) -> ApiError:
    """A Hostinger failure as a clear error for the client (never the token, never a
    stack trace): 429 and outages say when to come back; refusals say why."""
    status = error.status
    if status == 429:
        wait = max(1, math.ceil(error.retry_after or 30))
        return ApiError(
            503,
            "HOSTINGER_RATE_LIMITED",
            "HOSTINGER_ERROR: 429 - Hostinger is rate limiting requests",
            hint=f"retry after {wait} seconds",
            headers={"Retry-After": str(wait)},
        )
    if status in (401, 403):
        return ApiError(
            502,
            "HOSTINGER_ERROR",
            f"HOSTINGER_ERROR: {status} - the operator's Hostinger API token was refused",
        )
    if status == 422:
        return ApiError(409, "HOSTINGER_REFUSED", f"HOSTINGER_ERROR: 422 - {error.message}")
    if error.retryable:
        return ApiError(
            502,
            "HOSTINGER_UNAVAILABLE",
            f"HOSTINGER_ERROR: {status if status is not None else 'no reply'} - try again shortly",
            headers={"Retry-After": "5"},
        )
    return ApiError(
        502, "HOSTINGER_ERROR", f"HOSTINGER_ERROR: {status or 'no reply'} - {error.message}"
    )
