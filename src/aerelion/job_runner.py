"""The queue worker assembled from configuration — its handlers, the Hostinger client
and the vault — for `aerelion worker`, the `queue-processor` function and `make run`."""

from __future__ import annotations

from aerelion.config import Settings
from aerelion.hostinger_access import hostinger_factory
from aerelion.provisioning import VpsProvisioner
from aerelion.queue import JobQueue
from aerelion.reboot_watch import RebootWatcher
from aerelion.transactions import Database
from aerelion.vault import Vault
from aerelion.worker import Handler, Worker, default_worker_id


def handlers(settings: Settings, database: Database) -> dict[str, Handler]:
    hostinger = hostinger_factory(settings, database)
    return {
        "provision_vps": VpsProvisioner(database, Vault.from_environ(settings.environ), hostinger),
        "watch_reboot": RebootWatcher(hostinger),
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
