"""Log inserts per second with tamper evidence against the same table shape without it.

Tamper-evident: the real `edge_function_logs` (sequence number, inserting transaction,
their indexes, the append-only triggers), written through `record_edge_function_log`
exactly as the runtime writes it (the statement rendered from `queries.sql`). Plain: a
copy of the table created in the bench database without the `seq` and `xid` columns and
without triggers, written by a copy of the same function. pgbench runs each with 1 and
16 writers for BENCH_SECONDS (default 10) and the ratio is tamper-evident / plain.
Afterwards the backlog is sealed and verified once, and both are timed.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from aerelion import deploy
from aerelion.config import Settings
from aerelion.embedded import bin_dir
from aerelion.queries import QUERIES
from bench.function_rps import REPO, bench_database

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WRITERS = (1, 16)
SIGNATURE = "text, text, integer, integer, uuid, text, jsonb, text"

# The plain copy: the table as it was before sealing (LIKE copies no identity and no
# triggers; dropping the two columns drops their indexes), and the runtime's function
# with the table name swapped, so both variants run the same body.
PLAIN_TABLE = """
CREATE TABLE public.bench_plain_logs (
  LIKE public.edge_function_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES
);
ALTER TABLE public.bench_plain_logs DROP COLUMN seq, DROP COLUMN xid;
ALTER TABLE public.bench_plain_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.bench_plain_logs FORCE ROW LEVEL SECURITY;
"""
FUNCTION_DEFINITION = (
    f"SELECT pg_get_functiondef('public.record_edge_function_log({SIGNATURE})'::regprocedure)"
)


def prepare(conn: psycopg.Connection) -> dict[str, str]:
    """Create the plain copy; the pgbench script of each variant."""
    conn.execute(PLAIN_TABLE)
    definition = conn.execute(FUNCTION_DEFINITION).fetchone()[0]
    plain = definition.replace(
        "public.record_edge_function_log(", "public.bench_record_plain_log("
    ).replace("public.edge_function_logs", "public.bench_plain_logs")
    assert plain.count("bench_plain_logs") == 1, "the function body changed shape"
    conn.execute(plain)

    statement = psycopg.ClientCursor(conn).mogrify(
        QUERIES["record_edge_function_log"],
        {
            "function_name": "bench-function",
            "message": "OK",
            "status_code": 200,
            "duration_ms": 3,
            "user_id": uuid.uuid4(),
            "ip_address": "127.0.0.1",
            "details": Jsonb({"request_id": uuid.uuid4().hex, "method": "POST"}),
            "level": None,
        },
    )
    line = " ".join(statement.rstrip(";").split()) + ";\n"  # pgbench: one statement a line
    return {
        "plain": line.replace("public.record_edge_function_log(", "public.bench_record_plain_log("),
        "tamper-evident": line,
    }


def run_pgbench(url: str, script: Path, clients: int, seconds: int) -> float:
    threads = max(1, min(clients, os.cpu_count() or 1))
    output = subprocess.run(
        [
            str(bin_dir() / "pgbench"),
            *("-n", "-M", "prepared", f"-c{clients}", f"-j{threads}", f"-T{seconds}"),
            *("-f", str(script), url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"tps = ([\d.]+)", output).group(1))


def timed(conn: psycopg.Connection, statement: str) -> tuple[float, tuple]:
    start = time.perf_counter()
    row = conn.execute(statement).fetchone()
    return time.perf_counter() - start, row


def measure(url: str) -> None:
    deploy.push(url, Settings(REPO, {}), out=lambda _: None)
    with psycopg.connect(url, autocommit=True) as conn:
        scripts = prepare(conn)
    results: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for variant, text in scripts.items():
            paths[variant] = Path(folder) / f"{variant}.sql"
            paths[variant].write_text(text)
            run_pgbench(url, paths[variant], 1, 2)  # warm up
        for clients in WRITERS:  # alternate the variants so both see the same table sizes
            for variant, path in paths.items():
                results[variant, clients] = run_pgbench(url, path, clients, SECONDS)

    print(f"log inserts per second (pgbench, {SECONDS} s each)")
    print(f"{'writers':>7} {'plain':>9} {'tamper-evident':>15} {'ratio':>6}")
    for clients in WRITERS:
        plain, sealed = results["plain", clients], results["tamper-evident", clients]
        print(f"{clients:>7} {plain:>9.0f} {sealed:>15.0f} {sealed / plain:>6.2f}")

    with psycopg.connect(url, autocommit=True) as conn:
        seconds, row = timed(
            conn, "SELECT row_count FROM public.seal_audit_log() WHERE id IS NOT NULL"
        )
        rows = row[0] if row else 0
        rate = rows / seconds
        print(f"sealing the backlog : {rows} rows in {seconds:.2f} s ({rate:,.0f} rows/s)")
        seconds, row = timed(conn, "SELECT ok, sealed_rows FROM public.verify_audit_log()")
        ok, sealed_rows = row
        print(
            f"verifying           : {sealed_rows} rows in {seconds:.2f} s"
            f" ({sealed_rows / seconds:,.0f} rows/s), {'ok' if ok else 'FAULT'}"
        )


def main() -> None:
    with bench_database() as url:
        measure(url)


if __name__ == "__main__":
    main()
