"""The provisioning queue: three figures, each against a baseline measured in the same run.

1. Enqueue. wrk POSTs `{"plan": "starter", "region": "us-east-1"}` with an admin's JWT
   to `/functions/v1/hostinger-provision` (the real function, every check of
   `request_vps_provisioning` run as the caller, plus the request's log row), against
   pgbench calling `enqueue_provisioning` with the payload the function would build: the
   same insert without HTTP, the JWT or the checks. 16 connections each, BENCH_SECONDS
   (default 10), the timed wrk run starting from an empty queue. The registry lets the
   admin enqueue without limits for the run; every response must be a 202.
2. Drain. `aerelion.worker.Worker` with a no-op `provision_vps` handler (claim, then
   complete) emptying DRAIN_JOBS due jobs, against procrastinate (a job queue on
   PostgreSQL, installed into the venv on first use: a bench-only dependency) emptying as
   many no-op tasks on the same database. Concurrency 16 and a pool of 18 connections
   each; jobs are enqueued one transaction each beforehand, not timed, and the table is
   analyzed before the worker starts (as autovacuum would: without statistics,
   procrastinate's fetch query plans badly on a fresh table).
3. Claim time. The median of `claim_provisioning_jobs(1, …)` over CLAIMS rounds of
   enqueue, claim (timed), complete, after WARM_UP_CLAIMS untimed ones, with 1,000 and
   then 1,000,000 finished jobs in the table (filled by one INSERT … SELECT, then VACUUM
   ANALYZE, as autovacuum would).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aerelion import deploy, local_identity
from aerelion.config import Settings
from aerelion.queries import QUERIES
from aerelion.queue import Claim, JobQueue
from aerelion.transactions import Database
from aerelion.worker import Worker
from bench.function_rps import (
    CONNECTIONS,
    JWT_SECRET,
    REPO,
    SECONDS,
    bench_database,
    run,
    run_pgbench,
    serving,
)

ADMIN_EMAIL = "bench-admin@example.com"
BODY = {"plan": "starter", "region": "us-east-1"}
UNLIMITED = 1_000_000_000  # registry_int reads an integer
REGISTRY = {
    "regions": json.dumps({"us-east-1": 17}),
    "max_open_jobs_per_user": str(UNLIMITED),
    "provision_rate_max": str(UNLIMITED),
}
DRAIN_JOBS = 5_000
DRAIN_TIMEOUT = 600.0
CLAIMS = 200
WARM_UP_CLAIMS = 100  # after a fill, the first rounds read cold index pages
FINISHED = (1_000, 1_000_000)
LEASE_SECONDS = 300
PROCRASTINATE = "procrastinate==3.10.0"

SET_REGISTRY = (
    "UPDATE public.system_registry SET value = %s WHERE namespace = 'hostinger' AND key = %s"
)
ENQUEUE = "SELECT public.enqueue_provisioning(%s, 'provision_vps', %s)"
# Finished jobs, one a second back from now, shaped as complete_provisioning_job leaves
# them. One statement: the fill of a million rows stays well within a minute.
FILL_FINISHED = """
INSERT INTO public.provisioning_queue
  (user_id, action, payload, status, attempt_count, attempt_counted, claims, worker_id,
   step, scheduled_at, started_at, completed_at, created_at, updated_at, result)
SELECT %(user_id)s, 'provision_vps', %(payload)s, 'completed', 1, true, 1, 'bench-filler',
       'start', t, t, t + interval '1 second', t, t + interval '1 second', '{}'
FROM generate_series(1, %(rows)s) AS i,
     LATERAL (SELECT now() - make_interval(secs => %(rows)s - i + 60) AS t) AS s
"""


# -- 1. Enqueue: HTTP against pgbench ------------------------------------------------------


def wrk_script(token: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(BODY, separators=(',', ':'))}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )


def run_wrk_post(url: str, script: Path, seconds: int) -> tuple[float, int]:
    """`run_wrk` with a Lua script (wrk sends POST bodies only from one): requests/s and
    the responses counted; any non-2xx response is an error."""
    output = run(["wrk", f"-c{CONNECTIONS}", "-t2", f"-d{seconds}s", "-s", str(script), url])
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if failed:
        raise RuntimeError(f"wrk saw {failed.group(1)} failed responses")
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)), requests


def prepare_enqueue(conn: psycopg.Connection) -> tuple[uuid.UUID, str]:
    """The admin who posts, and the pgbench script enqueueing what the function would."""
    admin_id = local_identity.create_user(conn, ADMIN_EMAIL, admin=True)
    for key, value in REGISTRY.items():
        updated = conn.execute(SET_REGISTRY, (value, key))
        assert updated.rowcount == 1, f"registry hostinger/{key} is missing"
    item_id = conn.execute("SELECT public.registry_json('hostinger', 'plans') ->> 'starter'")
    payload = {
        **BODY,
        "item_id": item_id.fetchone()[0],
        "data_center_id": 17,
        "notes": None,
        "requested_by": str(admin_id),
    }
    statement = psycopg.ClientCursor(conn).mogrify(ENQUEUE, (admin_id, Jsonb(payload)))
    return admin_id, " ".join(statement.split()) + ";\n"


def count(conn: psycopg.Connection, statement: str) -> int:
    return conn.execute(statement).fetchone()[0]


def measure_enqueue(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        admin_id, pgbench_text = prepare_enqueue(conn)
    token = local_identity.sign(local_identity.user_claims(admin_id, ADMIN_EMAIL), JWT_SECRET)

    with tempfile.TemporaryDirectory() as folder:
        lua, pgbench_script = Path(folder) / "post.lua", Path(folder) / "enqueue.sql"
        lua.write_text(wrk_script(token))
        pgbench_script.write_text(pgbench_text)
        with serving(url) as base:
            endpoint = f"{base}/functions/v1/hostinger-provision"
            run_wrk_post(endpoint, lua, 2)  # warm up
            with psycopg.connect(url, autocommit=True) as conn:  # start from an empty queue
                conn.execute("TRUNCATE public.provisioning_queue")
            rps, requests = run_wrk_post(endpoint, lua, SECONDS)
        with psycopg.connect(url, autocommit=True) as conn:
            jobs = count(conn, "SELECT count(*) FROM public.provisioning_queue")
            statuses = dict(
                conn.execute(
                    "SELECT status_code, count(*) FROM public.edge_function_logs"
                    " WHERE function_name = 'hostinger-provision' GROUP BY 1"
                ).fetchall()
            )
        run_pgbench(url, pgbench_script, 2)  # warm up
        tps = run_pgbench(url, pgbench_script, SECONDS)

    if set(statuses) != {202} or jobs < requests:
        raise RuntimeError(f"not every request was accepted: {statuses}, {jobs} jobs")
    print(f"HTTP hostinger-provision (wrk)  : {rps:9.1f} requests/s, all 202")
    print(f"enqueue_provisioning (pgbench)  : {tps:9.1f} transactions/s")
    print(f"ratio                           : {rps / tps:9.2f} of pgbench")
    print(f"({CONNECTIONS} connections, {SECONDS} s each; {jobs} jobs queued by the timed wrk run)")


# -- 2. Drain: aerelion's worker against procrastinate -------------------------------------


def enqueue_many(url: str, user_id: uuid.UUID, jobs: int) -> None:
    """`jobs` due no-op jobs, one transaction each (as requests enqueue them)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE public.provisioning_queue")
        for _ in range(jobs):
            conn.execute(ENQUEUE, (user_id, Jsonb({})))
        conn.execute("ANALYZE public.provisioning_queue")


async def drain_aerelion(url: str, jobs: int) -> float:
    """Seconds for a Worker (no-op handler) to complete `jobs` jobs."""
    database = Database(url, pool_size=CONNECTIONS + 2, transaction_pooler=False)
    await database.open()
    stop = asyncio.Event()
    done = 0

    async def noop(claim: Claim, queue: JobQueue) -> str:
        nonlocal done
        status = await queue.complete(claim, {})
        done += 1
        if done >= jobs:
            stop.set()
        return status

    queue = JobQueue(database, "bench-worker", LEASE_SECONDS)
    worker = Worker(queue, {"provision_vps": noop}, concurrency=CONNECTIONS, interval=1.0)
    try:
        start = time.perf_counter()
        await asyncio.wait_for(worker.run(stop), DRAIN_TIMEOUT)
        return time.perf_counter() - start
    finally:
        await database.close()


def ensure_procrastinate() -> str:
    if importlib.util.find_spec("procrastinate") is None:
        print(f"installing {PROCRASTINATE} into the virtualenv (bench-only dependency)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", PROCRASTINATE], check=True)
        importlib.invalidate_caches()
    return importlib.metadata.version("procrastinate")


async def drain_procrastinate(url: str, jobs: int) -> float:
    """Seconds for procrastinate's worker to run `jobs` no-op tasks (schema applied and
    tasks deferred, one transaction each, beforehand)."""
    import procrastinate

    # Its warnings about where the App is declared concern applications, not this run.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=CONNECTIONS + 2)
    app = procrastinate.App(connector=connector)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for _ in range(jobs):
            await noop.defer_async()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE public.procrastinate_jobs")
        start = time.perf_counter()
        await asyncio.wait_for(
            app.run_worker_async(
                wait=False, concurrency=CONNECTIONS, install_signal_handlers=False
            ),
            DRAIN_TIMEOUT,
        )
        return time.perf_counter() - start


def measure_drain(url: str) -> None:
    version = ensure_procrastinate()
    with psycopg.connect(url, autocommit=True) as conn:
        user_id = local_identity.create_user(conn, ADMIN_EMAIL)
    enqueue_many(url, user_id, DRAIN_JOBS)
    ours = asyncio.run(drain_aerelion(url, DRAIN_JOBS))
    theirs = asyncio.run(drain_procrastinate(url, DRAIN_JOBS))
    with psycopg.connect(url, autocommit=True) as conn:
        completed = count(
            conn, "SELECT count(*) FROM public.provisioning_queue WHERE status = 'completed'"
        )
        total = count(conn, "SELECT count(*) FROM public.provisioning_queue")
        succeeded = count(
            conn, "SELECT count(*) FROM public.procrastinate_jobs WHERE status = 'succeeded'"
        )
    if completed != DRAIN_JOBS or total != DRAIN_JOBS or succeeded != DRAIN_JOBS:
        raise RuntimeError(f"drained {completed}/{total} and {succeeded} of {DRAIN_JOBS} jobs")

    print(f"aerelion Worker          : {DRAIN_JOBS / ours:9.1f} jobs/s ({ours:.2f} s)")
    print(f"procrastinate {version:<10} : {DRAIN_JOBS / theirs:9.1f} jobs/s ({theirs:.2f} s)")
    print(f"ratio                    : {theirs / ours:9.2f} of procrastinate")
    print(f"({DRAIN_JOBS} no-op jobs, concurrency {CONNECTIONS})")


# -- 3. Claim time against finished rows ---------------------------------------------------


def fill_finished(conn: psycopg.Connection, user_id: uuid.UUID, rows: int) -> float:
    start = time.perf_counter()
    conn.execute(FILL_FINISHED, {"user_id": user_id, "payload": Jsonb(BODY), "rows": rows})
    conn.execute("VACUUM ANALYZE public.provisioning_queue")
    return time.perf_counter() - start


def median_claim_ms(url: str, user_id: uuid.UUID) -> float:
    """Enqueue one job, claim it (timed), complete it; the median over CLAIMS rounds."""
    holder = {"limit": 1, "worker_id": "bench-claimer", "lease_seconds": LEASE_SECONDS}
    times = []
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for round_number in range(WARM_UP_CLAIMS + CLAIMS):
            job_id = conn.execute(ENQUEUE, (user_id, Jsonb({}))).fetchone()["enqueue_provisioning"]
            start = time.perf_counter()
            claimed = conn.execute(QUERIES["claim_provisioning_jobs"], holder).fetchall()
            elapsed = time.perf_counter() - start
            if [row["id"] for row in claimed] != [job_id]:
                raise RuntimeError(f"claimed {len(claimed)} jobs, not the one enqueued")
            conn.execute(
                QUERIES["complete_provisioning_job"],
                {
                    "job_id": job_id,
                    "lease": claimed[0]["claims"],
                    "worker_id": holder["worker_id"],
                    "result": Jsonb({}),
                },
            )
            if round_number >= WARM_UP_CLAIMS:
                times.append(elapsed)
    return statistics.median(times) * 1000


def measure_claims(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        user_id = local_identity.create_user(conn, ADMIN_EMAIL)
        conn.execute("TRUNCATE public.provisioning_queue")
    medians = {}
    for finished in FINISHED:
        with psycopg.connect(url, autocommit=True) as conn:
            # The finished rows so far include the claimed jobs of the previous rounds.
            so_far = count(conn, "SELECT count(*) FROM public.provisioning_queue")
            seconds = fill_finished(conn, user_id, finished - so_far)
        print(f"filled to {finished:>9,} finished jobs in {seconds:5.1f} s")
        medians[finished] = median_claim_ms(url, user_id)

    small, large = FINISHED
    print(f"claim, {small:>9,} finished : {medians[small]:7.3f} ms median")
    print(f"claim, {large:>9,} finished : {medians[large]:7.3f} ms median")
    print(f"ratio                       : {medians[large] / medians[small]:7.2f}")
    print(f"({CLAIMS} claims each: enqueue, claim, complete)")


def measure(url: str) -> None:
    deploy.push(url, Settings(REPO, {}), out=lambda _: None)
    print("-- enqueue: HTTP against pgbench (enqueue_provisioning)")
    measure_enqueue(url)
    print("-- drain: aerelion Worker against procrastinate")
    measure_drain(url)
    print("-- claim time against finished jobs in the table")
    measure_claims(url)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make bench installs it)")
    with bench_database() as url:
        measure(url)


if __name__ == "__main__":
    main()
