"""The queue worker assembled from configuration — its handlers, the Hostinger client
and the vault, the n8n lifecycle's jobs, the n8n nodes' health check and the agents'
auto-heal — for `aerelion worker`, the `queue-processor` function and `make run`."""

from __future__ import annotations

import functools

from aerelion import n8n_nodes
from aerelion.activation import lifecycle_for
from aerelion.agent_workflows import AgentWorkflows
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
    lifecycle = lifecycle_for(database, settings)
    return {
        "provision_vps": VpsProvisioner(database, Vault.from_environ(settings.environ), hostinger),
        "watch_reboot": RebootWatcher(hostinger),
        "activate_workflows": lifecycle.activate_job,
        "pause_workflows": lifecycle.pause_job,
        "resume_workflows": lifecycle.resume_job,
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
        background=[
            functools.partial(n8n_nodes.health_loop, database, settings),
            AgentWorkflows(database, settings).heal_loop,
        ],
    )


async def batch_size(database: Database) -> int:
    async with database.as_service() as tx:
        row = await tx.one("worker_settings") or {}
    return int(row.get("batch_size") or 5)
