"""The queue worker: claims due jobs, runs each with the handler of its action, keeps the
lease alive while it works, and drains gracefully when asked to stop.

Any number of workers run side by side on any number of machines (the claim uses FOR
UPDATE SKIP LOCKED). A worker wakes at once on `NOTIFY provisioning_queue` (sent when a
job is enqueued) and otherwise polls every `interval` seconds. A crashed worker's jobs
come back when their lease expires, as a failed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from aerelion.queue import Claim, JobQueue, LostClaim

logger = logging.getLogger("aerelion.worker")

# A handler ends its claim itself (complete, fail or wait) and returns the job's status.
Handler = Callable[[Claim, JobQueue], Awaitable[str]]
# A loop that runs beside the jobs while the worker runs, until the event is set (the n8n
# nodes' health check, the agents' auto-heal).
Background = Callable[[asyncio.Event], Awaitable[None]]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Outcome:
    job_id: uuid.UUID
    action: str
    status: str
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"id": str(self.job_id), "action": self.action, "status": self.status} | (
            {"error": self.error} if self.error else {}
        )


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 4,
        interval: float = 60.0,
        listen_url: str | None = None,
        background: Sequence[Background] = (),
    ) -> None:
        self.queue = queue
        self.background = tuple(background)
        self.handlers = handlers
        self.concurrency = concurrency
        self.interval = interval
        self.listen_url = listen_url
        self._wake = asyncio.Event()

    async def run_once(self, limit: int | None = None) -> list[Outcome]:
        """Claim up to `limit` due jobs and run them; what became of each."""
        claims = await self.queue.claim(limit or self.concurrency, list(self.handlers))
        return list(await asyncio.gather(*(self.run_claim(claim) for claim in claims)))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then finish the running jobs (drain) and return."""
        listener = asyncio.create_task(self._listen(stop)) if self.listen_url else None
        beside = [asyncio.create_task(loop(stop)) for loop in self.background]
        running: set[asyncio.Task[Outcome]] = set()
        try:
            while not stop.is_set():
                free = self.concurrency - len(running)
                if free > 0:
                    self._wake.clear()
                    try:
                        claims = await self.queue.claim(free, list(self.handlers))
                    except (psycopg.OperationalError, OSError) as error:
                        logger.warning("claiming failed: %s", type(error).__name__)
                        claims = []
                    for claim in claims:
                        task = asyncio.create_task(self.run_claim(claim))
                        running.add(task)
                        task.add_done_callback(running.discard)
                    if len(claims) == free:
                        continue  # there may be more due right away
                await self._sleep(stop, running)
        finally:
            if running:
                logger.info("draining %d running jobs", len(running))
                await asyncio.gather(*running, return_exceptions=True)
            for task in [t for t in (listener, *beside) if t is not None]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _sleep(self, stop: asyncio.Event, running: set[asyncio.Task[Outcome]]) -> None:
        """Until a NOTIFY, a job finishing (a free slot), `stop`, or the poll interval."""
        waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        if running and len(running) >= self.concurrency:
            waits.append(
                asyncio.ensure_future(asyncio.wait(set(running), return_when="FIRST_COMPLETED"))
            )
        try:
            await asyncio.wait(waits, timeout=self.interval, return_when="FIRST_COMPLETED")
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on a direct connection; reconnect after failures."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.listen_url, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN provisioning_queue")
                    async for _ in conn.notifies():
                        self._wake.set()
            except (psycopg.Error, OSError) as error:
                logger.warning("LISTEN connection lost: %s", type(error).__name__)
                await asyncio.sleep(min(self.interval, 5.0))

    async def run_claim(self, claim: Claim) -> Outcome:
        handler = self.handlers[claim.action]  # only handled actions are claimed
        renewal = asyncio.create_task(self._keep_lease(claim))
        try:
            status = await handler(claim, self.queue)
            return Outcome(claim.job_id, claim.action, status)
        except LostClaim:
            logger.warning("job %s: lost its lease to another worker", claim.job_id)
            return Outcome(claim.job_id, claim.action, "lost", "lease lost")
        except Exception as error:
            logger.exception("job %s failed", claim.job_id)
            message = f"{type(error).__name__}: {error}"[:500]
            try:
                status = await self.queue.fail(claim, message)
            except LostClaim:
                status = "lost"
            return Outcome(claim.job_id, claim.action, status, message)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _keep_lease(self, claim: Claim) -> None:
        period = max(self.queue.lease_seconds / 3, 0.5)
        while True:
            await asyncio.sleep(period)
            try:
                await self.queue.renew(claim)
            except LostClaim:
                return
            except (psycopg.Error, OSError) as error:
                logger.warning(
                    "job %s: lease renewal failed: %s", claim.job_id, type(error).__name__
                )
