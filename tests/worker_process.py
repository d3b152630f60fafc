"""A queue worker process for the tests: `python tests/worker_process.py URL MODE LEASE`.

MODE is `noop` (complete every job at once, recording which worker did it), `hang` (hold
the first job for ever: for killing), or `slow` (take two seconds per job: for draining).
It runs the real Worker loop until SIGTERM, then drains and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aerelion.queue import Claim, JobQueue
from aerelion.transactions import Database
from aerelion.worker import Worker, default_worker_id


async def noop(claim: Claim, queue: JobQueue) -> str:
    return await queue.complete(claim, {"worker": queue.worker_id})


async def hang(claim: Claim, queue: JobQueue) -> str:
    print(f"holding {claim.job_id}", flush=True)
    await asyncio.Event().wait()
    return "never"


async def slow(claim: Claim, queue: JobQueue) -> str:
    print(f"working on {claim.job_id}", flush=True)
    await asyncio.sleep(2)
    return await queue.complete(claim, {"worker": queue.worker_id})


async def main(url: str, mode: str, lease: int) -> None:
    database = Database(url, pool_size=6, transaction_pooler=False)
    await database.open()
    handler = {"noop": noop, "hang": hang, "slow": slow}[mode]
    worker = Worker(
        JobQueue(database, default_worker_id(), lease),
        {"provision_vps": handler},
        concurrency=4,
        interval=0.2,
        listen_url=url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await worker.run(stop)
    finally:
        await database.close()
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
