"""The n8n mesh: two figures, each against a baseline measured in the same run.

1. Reservations/s through `reserve_n8n_instance` (the named query, from Python through the
   pool, one autocommitted statement per reservation) at 1, 16 and 64 callers, against
   pgbench running the same statement with as many clients; three nodes of capacity in
   the ratio 100:50:10 (large enough never to fill), with the load spread printed after
   each run (reservations are serialised by design: the spread stays proportional).
2. One duplicate-and-activate on a real n8n node (median of ACTIVATIONS, through the
   activation service: SQL checks, reservation, the n8n calls, bookkeeping) against the
   bare n8n API calls it makes (credential schema, create workflow, create credential,
   PUT, activate, GET). Skipped with a message when n8n is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row

from aerelion import deploy
from aerelion.transactions import Database
from bench.function_rps import REPO, SECONDS, bench_database, bin_dir

CALLERS = (1, 16, 64)
ACTIVATIONS = int(os.environ.get("BENCH_ACTIVATIONS", "5"))
sys.path.insert(0, str(REPO / "tests"))


def reset_pool(conn: psycopg.Connection) -> None:
    conn.execute("delete from public.n8n_instances")
    for label, capacity in (("A", 10_000_000), ("B", 5_000_000), ("C", 1_000_000)):
        conn.execute(
            "insert into public.n8n_instances (instance_url, label, max_capacity, api_key_secret)"
            " values (%s, %s, %s, 'env:BENCH_KEY')",
            [f"http://bench-{label.lower()}.invalid", label, capacity],
        )


def spread(conn: psycopg.Connection) -> str:
    rows = conn.execute(
        "select label, current_load from public.n8n_instances order by max_capacity desc"
    ).fetchall()
    total = sum(r["current_load"] for r in rows) or 1
    return " ".join(
        f"{r['label']}={r['current_load']} ({r['current_load'] / total:.1%})" for r in rows
    )


async def python_rate(url: str, callers: int, seconds: int) -> float:
    database = Database(url, pool_size=callers, transaction_pooler=False)
    await database.open()
    done = 0
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await database.as_owner("reserve_n8n_instance", {"mapping_id": None})
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.monotonic() - started
    await database.close()
    return done / elapsed


def pgbench_rate(url: str, callers: int, seconds: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("SELECT * FROM public.reserve_n8n_instance(NULL);\n")
    output = subprocess.run(
        [
            str(bin_dir() / "pgbench"),
            "-n",
            f"-c{callers}",
            f"-j{min(callers, 2)}",
            f"-T{seconds}",
            "-f",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    return float(output.split("tps = ")[1].split()[0])


def reservations() -> None:
    with bench_database() as url:
        deploy.push(url, deploy_settings(), out=lambda _: None)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            print(f"{'callers':>8} {'ours/s':>10} {'pgbench/s':>10} {'ratio':>6}  spread (ours)")
            for callers in CALLERS:
                reset_pool(conn)
                ours = asyncio.run(python_rate(url, callers, SECONDS))
                load = spread(conn)
                reset_pool(conn)
                baseline = pgbench_rate(url, callers, SECONDS)
                ratio = ours / baseline
                print(f"{callers:>8} {ours:>10,.0f} {baseline:>10,.0f} {ratio:>6.2f}  {load}")


def deploy_settings():
    from support import settings_for

    return settings_for()


def real_activation() -> None:
    from n8n_peers import RealNodes, installed

    if not installed():
        print("skipped: n8n is not installed (.ci/run installs it into .aerelion/n8n)")
        return
    from n8n_support import add_node, import_automation, new_client, node_settings, template

    nodes = RealNodes(1)
    (node,) = nodes.start()
    try:
        with bench_database() as url:
            deploy.push(url, deploy_settings(), out=lambda _: None)
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                add_node(conn, node.url, "A", 1000)
                agent = import_automation(conn, template("Bench router"), "bench-router")
                clients = [new_client(conn, agent) for _ in range(ACTIVATIONS)]
            settings = node_settings({"A": (node.api_key, "runtime")}, None)
            ours = asyncio.run(_activations(url, settings, [c.request_id for c in clients]))
        bare = _bare_calls(node, ACTIVATIONS)
        print(f"duplicate-and-activate, median of {ACTIVATIONS}: {ours * 1000:.0f} ms")
        print(
            f"the bare n8n calls it makes, median:       {bare * 1000:.0f} ms"
            f"  (ratio {ours / bare:.2f})"
        )
    finally:
        nodes.close()


async def _activations(url: str, settings, request_ids) -> float:
    from aerelion.activation import Lifecycle
    from aerelion.vault import Vault

    database = Database(url, pool_size=4, transaction_pooler=False)
    await database.open()
    lifecycle = Lifecycle(database, settings, Vault.from_environ(settings.environ))
    times = []
    try:
        for request_id in request_ids:
            started = time.perf_counter()
            await lifecycle.activate(request_id, None)
            times.append(time.perf_counter() - started)
    finally:
        await database.close()
    return statistics.median(times)


def _bare_calls(node, rounds: int) -> float:
    from aerelion.n8n_workflows import workflow_copy
    from n8n_support import template

    times = []
    with httpx.Client(
        base_url=f"{node.url}/api/v1", headers={"X-N8N-API-KEY": node.api_key}, timeout=30
    ) as api:
        for index in range(rounds):
            body = workflow_copy(
                template("Bare router"), f"bare {index}", f"bare-{index}-{time.time()}"
            )
            started = time.perf_counter()
            api.get("/credentials/schema/openAiApi").raise_for_status()
            created = api.post("/workflows", json=body).json()
            credential = api.post(
                "/credentials",
                json={
                    "name": f"bare {index}",
                    "type": "openAiApi",
                    "data": {"apiKey": "sk-bare", "header": False},
                },
            ).json()
            body["nodes"][1]["credentials"] = {"openAiApi": {"id": credential["id"], "name": "x"}}
            api.put(f"/workflows/{created['id']}", json=body).raise_for_status()
            api.post(f"/workflows/{created['id']}/activate").raise_for_status()
            assert api.get(f"/workflows/{created['id']}").json()["active"] is True
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    reservations()
    real_activation()


if __name__ == "__main__":
    print(json.dumps({"seconds": SECONDS}))
    main()
