"""The command center: two figures, each against a baseline measured in the same run.

1. The live log page stays flat. What the page loads first (`GET /nexus/logs/rows`, the
   newest 100 rows, and `GET /nexus/logs/summary`, the mode, the agents and the counts over
   the newest 1,000 rows), over HTTP with an admin's JWT, and the newest-100 query alone
   (`provenance_log()`, unfiltered, by level and by agent), timed with 1,000 rows in
   `edge_function_logs` and again with 1,000,000: the ratio should stay near 1. Medians of
   ROUNDS calls each. The million rows are added by one INSERT … SELECT (every 20th an
   agent's heartbeat, 3 % errors), then VACUUM ANALYZE, as autovacuum would.
2. Heartbeats ingested per second: wrk POSTs to `agent-heartbeat` (the shared key in
   `x-heartbeat-key`, validation, `record_agent_heartbeat()`, the log row) against pgbench
   running the same two statements, 16 connections each, BENCH_SECONDS (default 10).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg.types.json import Jsonb

from aerelion import deploy, local_identity
from aerelion.config import Settings
from aerelion.queries import QUERIES
from bench.function_rps import (
    CONNECTIONS,
    JWT_SECRET,
    REPO,
    SECONDS,
    bench_database,
    run_pgbench,
    serving,
)
from bench.queue import run_wrk_post

ROUNDS = int(os.environ.get("BENCH_LOG_ROUNDS", "200"))
BIG = 1_000_000
HEARTBEAT_KEY = "bench-heartbeat-" + "h" * 40
ADMIN_EMAIL = "bench-admin@example.com"
SERVICE = "SELECT set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)"
FILL = """
INSERT INTO public.edge_function_logs
  (function_name, level, message, details, status_code, duration_ms, created_at)
SELECT CASE WHEN i %% 20 = 0 THEN 'agent-heartbeat' ELSE 'fn-' || (i %% 40) END,
       CASE WHEN i %% 33 = 0 THEN 'error' WHEN i %% 14 = 0 THEN 'warn' ELSE 'info' END,
       'filler row ' || i,
       CASE WHEN i %% 20 = 0 THEN jsonb_build_object('agent_id', 'AG-0' || (1 + i %% 7))
            ELSE jsonb_build_object('request_id', md5(i::text)) END,
       200, i %% 50, now() - make_interval(secs => %(rows)s - i)
FROM generate_series(1, %(rows)s) AS i
"""
QUERY_CASES = {
    "newest 100": {"level": None, "agent": None},
    "newest 100 errors": {"level": "error", "agent": None},
    "newest 100 of AG-03": {"level": None, "agent": "AG-03"},
}


def median_ms(call, rounds: int = ROUNDS) -> float:
    for _ in range(10):
        call()  # warm up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def query_timings(url: str) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SERVICE)
        statement = QUERIES["provenance_log"]
        out = {}
        for label, filters in QUERY_CASES.items():
            params = {"before": None, "after": None, "limit": 100, "function": None,
                      "since": None, **filters}  # fmt: skip
            out[label] = median_ms(lambda p=params: conn.execute(statement, p).fetchall())
        out["summary"] = median_ms(lambda: conn.execute(QUERIES["provenance_summary"]).fetchone())
    return out


def page_timing(base: str, token: str) -> float:
    """The page's first two requests, one after the other, as the page sends them."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:

        def load() -> None:
            for path in ("/nexus/logs/summary", "/nexus/logs/rows?limit=100"):
                client.get(path).raise_for_status()

        return median_ms(load, max(ROUNDS // 2, 20))


def heartbeat_script(conn: psycopg.Connection) -> str:
    cursor = psycopg.ClientCursor(conn)
    beat = cursor.mogrify(
        QUERIES["record_agent_heartbeat"],
        {"agent_id": "AG-03", "status": "NOMINAL", "message": "cycle", "metadata": Jsonb({})},
    )
    log_row = cursor.mogrify(
        QUERIES["record_edge_function_log"],
        {
            "function_name": "agent-heartbeat",
            "message": "AG-03: cycle",
            "status_code": 200,
            "duration_ms": 1,
            "user_id": None,
            "ip_address": "127.0.0.1",
            "details": Jsonb({"request_id": uuid.uuid4().hex, "agent_id": "AG-03"}),
            "level": "info",
        },
    )
    lines = [SERVICE, beat, log_row]
    return "\n".join(" ".join(s.rstrip(";").split()) + ";" for s in lines) + "\n"


def wrk_script() -> str:
    body = {"agent_id": "AG-03", "status": "NOMINAL", "message": "cycle"}
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(body, separators=(',', ':'))}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["x-heartbeat-key"] = "{HEARTBEAT_KEY}"\n'
    )


def measure(url: str) -> None:
    deploy.push(url, Settings(REPO, {}), out=lambda _: None)
    with psycopg.connect(url, autocommit=True) as conn:
        admin = local_identity.create_user(conn, ADMIN_EMAIL, admin=True)
        have = conn.execute("SELECT count(*) FROM public.edge_function_logs").fetchone()[0]
        conn.execute(FILL, {"rows": max(1000 - have, 0)})
        conn.execute("VACUUM ANALYZE public.edge_function_logs")
        pgbench_text = heartbeat_script(conn)
    token = local_identity.sign(local_identity.user_claims(admin, ADMIN_EMAIL), JWT_SECRET)
    os.environ["HEARTBEAT_SECRET"] = HEARTBEAT_KEY  # for the served app

    with serving(url) as base:
        small_page = page_timing(base, token)
        small = query_timings(url)
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL, {"rows": BIG - 1000})
            conn.execute("VACUUM ANALYZE public.edge_function_logs")
        filled = time.perf_counter() - started
        big_page = page_timing(base, token)
        big = query_timings(url)

        with tempfile.TemporaryDirectory() as folder:
            lua = Path(folder) / "beat.lua"
            lua.write_text(wrk_script())
            endpoint = f"{base}/functions/v1/agent-heartbeat"
            run_wrk_post(endpoint, lua, 2)  # warm up
            rps, _ = run_wrk_post(endpoint, lua, SECONDS)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "beat.sql"
        script.write_text(pgbench_text)
        run_pgbench(url, script, 2)  # warm up
        tps = run_pgbench(url, script, SECONDS)

    print(f"(1,000,000 rows added in {filled:.0f} s)")
    print(f"{'median, ms':32} {'1,000 rows':>11} {'1,000,000':>11} {'ratio':>7}")
    rows = [("page load: summary + rows (HTTP)", small_page, big_page)]
    rows += [(label, small[label], big[label]) for label in (*QUERY_CASES, "summary")]
    for label, little, large in rows:
        print(f"{label:32} {little:11.2f} {large:11.2f} {large / little:7.2f}")
    print(f"heartbeats over HTTP (wrk)      : {rps:9.1f} requests/s")
    print(f"same SQL (pgbench)              : {tps:9.1f} transactions/s")
    print(f"ratio                           : {rps / tps:9.2f} of pgbench ({CONNECTIONS} conn.)")


def main() -> None:
    with bench_database() as url:
        measure(url)


if __name__ == "__main__":
    main()
