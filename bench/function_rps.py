"""Requests per second of a trivial function (user JWT, one query as the caller, plus its
log row) against pgbench running the same SQL on the same database, 16 connections each.

The pgbench script is rendered from the statements the runtime itself sends for one
request (`queries.sql`): the as-caller transaction (settings, then the query) and the
log row. The ratio is the price of HTTP, JWT verification and Python on top of the
database work. wrk generates the HTTP load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from aerelion import deploy, local_identity
from aerelion.config import Settings
from aerelion.embedded import bin_dir, free_port, throwaway
from aerelion.queries import QUERIES, parse

REPO = Path(__file__).resolve().parents[1]
BENCH_QUERIES = {**QUERIES, **parse((REPO / "bench" / "queries.sql").read_text())}
CONNECTIONS = 16
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
JWT_SECRET = "bench-" + "b" * 58
EMAIL = "bench@example.com"


def bench_app():  # for `uvicorn --factory`
    from aerelion.app import create_app
    from aerelion.functions import load_functions

    return create_app(
        settings=Settings.load(REPO),
        functions=load_functions(REPO / "bench" / "functions"),
        queries=BENCH_QUERIES,
    )


def pgbench_script(conn: psycopg.Connection, user_id: uuid.UUID) -> str:
    """One request's statements with their values, as pgbench will send them."""
    cursor = psycopg.ClientCursor(conn)
    claims = local_identity.user_claims(user_id, EMAIL)
    act_as = cursor.mogrify(
        QUERIES["act_as"],
        {
            "statement_timeout": "8s",
            "role": "authenticated",
            "claims": json.dumps(claims),
            "method": "GET",
            "path": "/functions/v1/ping-as-caller",
            "headers": '{"host": "127.0.0.1"}',
        },
    )
    log_row = cursor.mogrify(
        QUERIES["record_edge_function_log"],
        {
            "function_name": "ping-as-caller",
            "message": "OK",
            "status_code": 200,
            "duration_ms": 1,
            "user_id": user_id,
            "ip_address": "127.0.0.1",
            "details": Jsonb({"request_id": uuid.uuid4().hex, "method": "GET"}),
            "level": None,
        },
    )
    statements = ["BEGIN", act_as, BENCH_QUERIES["bench_ping"], "COMMIT", log_row]
    # pgbench reads one statement per line.
    return "\n".join(" ".join(s.rstrip(";").split()) + ";" for s in statements) + "\n"


def run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def run_wrk(url: str, token: str, seconds: int) -> float:
    auth = f"Authorization: Bearer {token}"
    output = run(["wrk", f"-c{CONNECTIONS}", "-t2", f"-d{seconds}s", "-H", auth, url])
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if failed:
        raise RuntimeError(f"wrk saw {failed.group(1)} failed responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def run_pgbench(database_url: str, script: Path, seconds: int) -> float:
    pgbench = str(bin_dir() / "pgbench")
    output = run(
        [pgbench, "-n", f"-c{CONNECTIONS}", "-j2", f"-T{seconds}", "-f", str(script), database_url]
    )
    return float(re.search(r"tps = ([\d.]+)", output).group(1))


def wait_until_healthy(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become healthy")


@contextmanager
def serving(database_url: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "AERELION_DB_POOL_SIZE": str(CONNECTIONS),
    }
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "bench.function_rps:bench_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
            *("--log-level", "warning"),
        ],
        cwd=REPO,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, server)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(database_url: str) -> None:
    deploy.push(database_url, Settings(REPO, {}), out=lambda _: None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        user_id = local_identity.create_user(conn, EMAIL)
        script_text = pgbench_script(conn, user_id)
    token = local_identity.sign(local_identity.user_claims(user_id, EMAIL), JWT_SECRET)

    with serving(database_url) as base:
        url = f"{base}/functions/v1/ping-as-caller"
        run_wrk(url, token, 2)  # warm up
        rps = run_wrk(url, token, SECONDS)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "request.sql"
        script.write_text(script_text)
        run_pgbench(database_url, script, 2)  # warm up
        tps = run_pgbench(database_url, script, SECONDS)

    print(f"function (wrk)    : {rps:9.1f} requests/s, {CONNECTIONS} connections, {SECONDS} s")
    print(f"pgbench, same SQL : {tps:9.1f} requests/s, {CONNECTIONS} connections, {SECONDS} s")
    print(f"ratio             : {rps / tps:9.2f} of pgbench")


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database: on DATABASE_URL's server if set, else on a throwaway cluster."""
    configured = os.environ.get("DATABASE_URL")
    if not configured:
        with throwaway(REPO / ".aerelion" / f"bench-{os.getpid()}") as server:
            yield server.url()
        return
    name = f"aerelion_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(configured, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(configured)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(configured, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make bench installs it)")
    with bench_database() as url:
        measure(url)


if __name__ == "__main__":
    main()
