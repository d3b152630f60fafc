"""Running the processes: the function server, the queue worker, and `make run`'s whole
local stack (server + worker + a Hostinger stand-in when no real token is configured)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from dataclasses import replace
from typing import Any

import uvicorn

from aerelion import job_runner
from aerelion.app import App, create_app
from aerelion.config import Settings
from aerelion.transactions import Database
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


@contextlib.contextmanager
def _hostinger_stand_in(settings: Settings) -> Any:
    """Without HOSTINGER_API_TOKEN, a loopback Hostinger stand-in and settings pointing at
    it, so a VPS comes up end to end locally."""
    if settings.get("HOSTINGER_API_TOKEN"):
        yield settings
        return
    from aerelion.standins.hostinger import HostingerStandIn

    token = secrets.token_urlsafe(24)
    stand_in = HostingerStandIn(token=token, setup_seconds=5.0)
    base_url = stand_in.start()
    print(f"Hostinger stand-in: {base_url} (set HOSTINGER_API_TOKEN for the real API)")
    try:
        yield replace(
            settings,
            environ={
                **settings.environ,
                "HOSTINGER_API_BASE": base_url,
                "HOSTINGER_API_TOKEN": token,
            },
        )
    finally:
        stand_in.stop()


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
    with _hostinger_stand_in(settings) as local:
        asyncio.run(_serve_with_worker(local, url, host, port))
