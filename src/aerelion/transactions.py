"""The connection pool, and transactions that act as the caller, the way PostgREST does.

Every transaction starts by setting — locally, so pooled connections stay clean — the
role (`anon`, `authenticated` or `service_role`), the caller's JWT claims in
`request.jwt.claims`, the request method, path and headers, and the role's statement
timeout. Row-level security then decides what the caller may see and do, exactly as it
does for PostgREST polling. Handlers run only named queries from `queries.sql`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from aerelion.queries import QUERIES

# Supabase gives the API roles these statement timeouts (role settings PostgREST applies).
STATEMENT_TIMEOUTS = {"anon": "3s", "authenticated": "8s"}
SERVICE_CLAIMS: Mapping[str, Any] = {"role": "service_role"}

Params = Mapping[str, Any] | None


class Transaction:
    """One transaction, acting as one role. Queries are named, never built here."""

    def __init__(self, conn: AsyncConnection[dict[str, Any]], queries: Mapping[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    async def all(self, name: str, params: Params = None) -> list[dict[str, Any]]:
        cursor = await self._conn.execute(self._queries[name], _adapt(params))
        return await cursor.fetchall()

    async def one(self, name: str, params: Params = None) -> dict[str, Any] | None:
        cursor = await self._conn.execute(self._queries[name], _adapt(params))
        return await cursor.fetchone()

    async def value(self, name: str, params: Params = None) -> Any:
        row = await self.one(name, params)
        return None if row is None else next(iter(row.values()))

    async def run(self, name: str, params: Params = None) -> None:
        await self._conn.execute(self._queries[name], _adapt(params))


def _adapt(params: Params) -> dict[str, Any] | None:
    """Dicts travel as jsonb (lists as arrays)."""
    if params is None:
        return None
    return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in params.items()}


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int,
        transaction_pooler: bool,
        queries: Mapping[str, str] = QUERIES,
    ) -> None:
        self.url = url
        self.queries = queries
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        if transaction_pooler:
            kwargs["prepare_threshold"] = None  # a transaction pooler cannot keep them
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            open=False,
            name="aerelion",
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def acting_as(
        self,
        role: str,
        claims: Mapping[str, Any],
        *,
        method: str = "",
        path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Transaction]:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                QUERIES["act_as"],
                {
                    "statement_timeout": STATEMENT_TIMEOUTS.get(role),
                    "role": role,
                    "claims": json.dumps(dict(claims)),
                    "method": method,
                    "path": path,
                    "headers": json.dumps(dict(headers or {})),
                },
            )
            yield Transaction(conn, self.queries)

    def as_service(self) -> Any:
        """Service work (the queue worker, webhooks, the request log) as `service_role`."""
        return self.acting_as("service_role", SERVICE_CLAIMS)

    async def as_owner(self, name: str, params: Params = None) -> list[dict[str, Any]]:
        """One statement, autocommitted, as the connecting role (the schema owner): for
        narrow SECURITY DEFINER functions that act for nobody in particular (the request
        log, the queue worker's claims and reports). One round trip."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(self.queries[name], _adapt(params))
            return await cursor.fetchall() if cursor.description else []

    async def ping(self) -> bool:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(QUERIES["ping"])
            return (await cursor.fetchone()) is not None
