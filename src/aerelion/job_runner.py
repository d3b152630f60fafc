"""The queue worker assembled from configuration — its handlers, the Hostinger client
and the vault — for `aerelion worker`, the `queue-processor` function and `make run`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aerelion.config import Settings
from aerelion.hostinger import HostingerClient
from aerelion.provisioning import ClientFactory, VpsProvisioner
from aerelion.queue import JobQueue
from aerelion.registry import registry_value
from aerelion.transactions import Database
from aerelion.vault import Vault
from aerelion.worker import Handler, Worker, default_worker_id


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


def handlers(settings: Settings, database: Database) -> dict[str, Handler]:
    return {
        "provision_vps": VpsProvisioner(
            database, Vault.from_environ(settings.environ), hostinger_factory(settings, database)
        ),
    }


async def build_worker(
    settings: Settings,
    database: Database,
    *,
    concurrency: int = 4,
    interval: float = 60.0,
    worker_id: str | None = None,
    lease_seconds: int | None = None,
    listen: bool = True,
) -> Worker:
    async with database.as_service() as tx:
        row = await tx.one("worker_settings") or {}
    lease = lease_seconds or int(row.get("lease_s") or 300)
    return Worker(
        JobQueue(database, worker_id or default_worker_id(), lease),
        handlers(settings, database),
        concurrency=concurrency,
        interval=interval,
        listen_url=(settings.database_listen_url or database.url) if listen else None,
    )


async def batch_size(database: Database) -> int:
    async with database.as_service() as tx:
        row = await tx.one("worker_settings") or {}
    return int(row.get("batch_size") or 5)
