"""Running the processes: the function server, the queue worker, and `make run`'s whole
local stack (server + worker + Hostinger, Stripe and n8n stand-ins when no real credentials
or node are configured)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import uvicorn

from aerelion import job_runner, key_rotation, operations
from aerelion.app import App, ConfigurationError, create_app
from aerelion.config import Settings
from aerelion.transactions import Database
from aerelion.vault import Vault
from aerelion.worker import Outcome


def _server(app: App, settings: Settings, host: str, port: int) -> uvicorn.Server:
    base = f"http://{host}:{port}"
    print(f"serving {len(app.functions)} functions at {base}/functions/v1/<name>")
    print(f"health: {base}/health   openapi: {base}/openapi.json")
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            proxy_headers=True,
            forwarded_allow_ips=settings.get("FORWARDED_ALLOW_IPS") or "127.0.0.1",
            access_log=False,
            log_level="info",
        )
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interrupt_on_sigterm() -> None:
    """uvicorn re-raises the signal it stopped on once it has shut down; for SIGTERM that
    would kill the process before our cleanup (e.g. stopping the embedded database)."""
    signal.signal(signal.SIGTERM, _interrupt)


def serve(settings: Settings, url: str, names: list[str] | None, host: str, port: int) -> None:
    """Serve all or the named functions until SIGINT/SIGTERM."""
    _interrupt_on_sigterm()
    _server(create_app(names, settings=settings, database_url=url), settings, host, port).run()


def _database(settings: Settings, url: str, concurrency: int) -> Database:
    return Database(url, pool_size=concurrency + 2, transaction_pooler=settings.transaction_pooler)


async def run_worker(
    settings: Settings, url: str, *, once: bool, concurrency: int, interval: float
) -> list[Outcome]:
    """`aerelion worker`: run due jobs once, or until SIGTERM/SIGINT (then drain)."""
    database = _database(settings, url, concurrency)
    await database.open()
    try:
        worker = await job_runner.build_worker(
            settings, database, concurrency=concurrency, interval=interval, listen=not once
        )
        if once:
            return await worker.run_once()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print(f"worker {worker.queue.worker_id}: {concurrency} at a time", file=sys.stderr)
        await worker.run(stop)
        return []
    finally:
        await database.close()


async def rotate_keys(
    settings: Settings, url: str, *, dry_run: bool, batch_size: int
) -> dict[str, Any]:
    """`aerelion keys rotate`: as the service role, the operator named as the actor."""
    vault = Vault.from_environ(settings.environ)
    if vault is None:
        raise ConfigurationError("no CREDENTIAL_ENCRYPTION_KEY(S) configured")
    database = _database(settings, url, 1)
    await database.open()
    try:
        report = await key_rotation.rotate(
            lambda: database.acting_as("service_role", operations.service_claims()),
            vault,
            dry_run=dry_run,
            batch_size=batch_size,
        )
    finally:
        await database.close()
    return report.as_dict()


@dataclass(frozen=True)
class StandIn:
    """An external service `make run` replaces with a loopback stand-in when its credential
    is not configured: the stand-in is made for a fresh credential, and the settings point
    the clients at it."""

    name: str
    credential: str  # the environment variable holding the real credential
    base_url: str  # the environment variable that points the client elsewhere
    new_credential: Callable[[], str]
    make: Callable[[str], Any]  # credential -> a server with start() -> url and stop()
    # the variable whose presence means "use the real service" (default: the credential)
    configured_by: str | None = None
    # more variables the stand-in needs, generated when unset
    extra: tuple[tuple[str, Callable[[], str]], ...] = ()


def _hostinger(token: str) -> Any:
    from aerelion.standins.hostinger import HostingerStandIn

    return HostingerStandIn(token=token, setup_seconds=5.0)


def _n8n(api_key: str) -> Any:
    from aerelion.standins.n8n import N8nStandIn

    return N8nStandIn(api_key=api_key)


def _stripe(api_key: str) -> Any:
    from aerelion.standins.stripe import StripeStandIn

    return StripeStandIn(api_key=api_key)


STAND_INS = (
    StandIn(
        "Hostinger",
        "HOSTINGER_API_TOKEN",
        "HOSTINGER_API_BASE",
        lambda: secrets.token_urlsafe(24),
        _hostinger,
    ),
    StandIn(
        "Stripe",
        "STRIPE_SECRET_KEY",
        "STRIPE_API_BASE",
        lambda: "sk_test_" + secrets.token_urlsafe(24),
        _stripe,
    ),
    StandIn(
        "n8n",
        "N8N_API_KEY",
        "N8N_BASE_URL",
        lambda: secrets.token_urlsafe(32),
        _n8n,
        configured_by="N8N_BASE_URL",
        extra=(("N8N_RUNTIME_SECRET", lambda: secrets.token_urlsafe(32)),),
    ),
)


@contextlib.contextmanager
def _stand_ins(settings: Settings, stand_ins: tuple[StandIn, ...] = STAND_INS) -> Any:
    """A loopback stand-in for every service without a configured credential (a VPS comes
    up end to end, checkout and the billing portal answer), and settings pointing at them."""
    environ = dict(settings.environ)
    with contextlib.ExitStack() as running:
        for stand_in in stand_ins:
            if settings.get(stand_in.configured_by or stand_in.credential):
                continue
            credential = stand_in.new_credential()
            server = stand_in.make(credential)
            base_url = server.start()
            running.callback(server.stop)
            hint = f"set {stand_in.configured_by or stand_in.credential} for the real API"
            print(f"{stand_in.name} stand-in: {base_url} ({hint})")
            environ.update({stand_in.base_url: base_url, stand_in.credential: credential})
            for name, make_value in stand_in.extra:
                environ.setdefault(name, make_value())
        yield replace(settings, environ=environ)


async def _serve_with_worker(settings: Settings, url: str, host: str, port: int) -> None:
    server = _server(create_app(settings=settings, database_url=url), settings, host, port)
    database = _database(settings, url, 4)
    await database.open()
    stop = asyncio.Event()
    try:
        worker = await job_runner.build_worker(settings, database, interval=10.0)
        working = asyncio.create_task(worker.run(stop))
        try:
            await server.serve()  # until SIGINT/SIGTERM (which uvicorn then re-raises)
        finally:
            stop.set()
            await working  # drain the running jobs
    finally:
        await database.close()


def run_stack(settings: Settings, url: str, host: str, port: int) -> None:
    """`make run`: the functions and the queue worker in one process."""
    _interrupt_on_sigterm()
    with _stand_ins(settings) as local:
        asyncio.run(_serve_with_worker(local, url, host, port))
