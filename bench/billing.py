"""Verified Stripe webhook events applied per second.

wrk POSTs signed `invoice.paid` events, each for a new invoice of one of USERS subscribed
clients, to `/functions/v1/stripe-portal-webhook`: HTTP, the signature verified by the
stripe library, the event stored once and applied by `receive_stripe_event` (the
invoice, the client's billing row, the access check, a notification) in one transaction,
and the request's log row. pgbench sends the same statements for the same kind of events
(the service-role transaction calling `receive_stripe_event`, then the log row), without
HTTP or the signature. 16 connections each, BENCH_SECONDS (default 10). Every event is
distinct (no duplicate takes the cheap path); the events are signed before the run, within
the 300 s tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
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
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from aerelion import deploy
from aerelion.config import Settings
from aerelion.embedded import free_port
from aerelion.queries import QUERIES
from aerelion.stripe_client import API_VERSION
from aerelion.stripe_config import STRIPE_TIERS
from bench.function_rps import (
    CONNECTIONS,
    JWT_SECRET,
    REPO,
    SECONDS,
    bench_database,
    run,
    run_pgbench,
    wait_until_healthy,
)

USERS = 200
SECRET = "whsec_bench_" + "w" * 32
THREADS = 2
PATH = "/functions/v1/stripe-portal-webhook"
OPERATOR = next(tier for tier in STRIPE_TIERS if tier.key == "operator")
SERVICE = {"role": "service_role"}


def bench_app():  # for `uvicorn --factory`
    from aerelion.app import create_app

    return create_app(["stripe-portal-webhook"], settings=Settings.load(REPO))


def user_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def invoice_paid(n: int, invoice: str, created: int) -> dict[str, Any]:
    """An `invoice.paid` event (API version 2026-10-28.endive) of client `n`."""
    subscription = f"sub_bench_{n}"
    return {
        "id": f"evt_{invoice}",
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {
            "object": {
                "id": f"in_{invoice}",
                "object": "invoice",
                "amount_due": 250_000,
                "amount_paid": 250_000,
                "amount_remaining": 0,
                "billing_reason": "subscription_cycle",
                "created": created,
                "currency": "usd",
                "customer": f"cus_bench_{n}",
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {
                        "metadata": {"purpose": "tier", "tier": "operator", "user_id": user_id(n)},
                        "subscription": subscription,
                    },
                },
                "status": "paid",
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "type": "invoice.paid",
    }


def subscription_created(n: int, created: int) -> dict[str, Any]:
    return {
        "id": f"evt_bench_sub_{n}",
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {
            "object": {
                "id": f"sub_bench_{n}",
                "object": "subscription",
                "created": created,
                "customer": f"cus_bench_{n}",
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": f"si_bench_{n}",
                            "object": "subscription_item",
                            "current_period_end": created + 30 * 86_400,
                            "current_period_start": created,
                            "price": {"id": OPERATOR.price_id, "product": OPERATOR.product_id},
                            "quantity": 1,
                        }
                    ],
                },
                "metadata": {"purpose": "tier", "tier": "operator", "user_id": user_id(n)},
                "status": "active",
            }
        },
        "livemode": False,
        "type": "customer.subscription.created",
    }


def signature(payload: bytes, moment: int) -> str:
    mac = hmac.new(SECRET.encode(), f"{moment}.".encode() + payload, hashlib.sha256)
    return f"t={moment},v1={mac.hexdigest()}"


def prepare(database_url: str) -> None:
    """USERS clients, each subscribed to The Operator (through the same SQL function)."""
    created = int(time.time()) - 86_400
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n in range(1, USERS + 1):
            conn.execute(
                "INSERT INTO auth.users (id, email) VALUES (%s, %s)",
                (user_id(n), f"bench-{n}@example.com"),
            )
            with conn.transaction():
                conn.execute(
                    "SELECT set_config('role', 'service_role', true),"
                    " set_config('request.jwt.claims', %s, true)",
                    (json.dumps(SERVICE),),
                )
                conn.execute(
                    QUERIES["receive_stripe_event"],
                    {"endpoint": "portal", "event": json.dumps(subscription_created(n, created))},
                )


def write_events(path: Path, count: int, tag: str) -> None:
    """`count` distinct signed events, one `<signature>\\t<body>` line each."""
    moment = int(time.time())
    with path.open("w") as out:
        for i in range(count):
            payload = json.dumps(
                invoice_paid(i % USERS + 1, f"{tag}{i}", moment), separators=(",", ":")
            ).encode()
            out.write(f"{signature(payload, moment)}\t{payload.decode()}\n")


def wrk_script(events: Path) -> str:
    return f"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  requests, index = {{}}, 0
  local line_number = 0
  for line in io.lines("{events}") do
    if line_number % {THREADS} == id then
      local tab = line:find("\\t")
      local headers = {{["Content-Type"] = "application/json",
                       ["Stripe-Signature"] = line:sub(1, tab - 1)}}
      table.insert(requests, wrk.format("POST", "{PATH}", headers, line:sub(tab + 1)))
    end
    line_number = line_number + 1
  end
end
function request()
  index = index + 1
  if index > #requests then
    error("out of distinct events")
  end
  return requests[index]
end
"""


def run_wrk(url: str, script: Path, seconds: int) -> float:
    output = run(
        ["wrk", f"-c{CONNECTIONS}", f"-t{THREADS}", f"-d{seconds}s", "-s", str(script), url]
    )
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if failed:
        raise RuntimeError(f"wrk saw {failed.group(1)} failed responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def pgbench_script(conn: psycopg.Connection) -> str:
    """The statements the function sends for one event, for a fresh event each time."""
    template = json.dumps(invoice_paid(0, "pgb__N__", int(time.time())), separators=(",", ":"))
    template = template.replace("cus_bench_0", "cus_bench___U__")
    template = template.replace("sub_bench_0", "sub_bench___U__")
    template = template.replace(user_id(0), "00000000-0000-4000-8000-__UID__")
    cursor = psycopg.ClientCursor(conn)
    act_as = cursor.mogrify(
        QUERIES["act_as"],
        {
            "statement_timeout": None,
            "role": "service_role",
            "claims": json.dumps(SERVICE),
            "method": "POST",
            "path": PATH,
            "headers": '{"host": "127.0.0.1"}',
        },
    )
    event_sql = sql.Literal(template).as_string(conn)
    receive = (
        "SELECT outcome, duplicate FROM public.receive_stripe_event('portal', "
        f"replace(replace(replace({event_sql}, '__N__', :n::text), '__U__', :u::text),"
        " '__UID__', lpad(:u::text, 12, '0'))::jsonb)"
    )
    log_row = cursor.mogrify(
        QUERIES["record_edge_function_log"],
        {
            "function_name": "stripe-portal-webhook",
            "message": "STRIPE_EVENT invoice.paid: invoice paid",
            "status_code": 200,
            "duration_ms": 1,
            "user_id": None,
            "ip_address": "127.0.0.1",
            "details": Jsonb({"request_id": uuid.uuid4().hex, "method": "POST"}),
            "level": None,
        },
    )
    lines = [
        "\\set n random(1, 9000000000000000000)",
        f"\\set u random(1, {USERS})",
        "BEGIN;",
        " ".join(act_as.split()) + ";",
        receive + ";",
        "COMMIT;",
        " ".join(log_row.split()) + ";",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def serving(database_url: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "STRIPE_PORTAL_WEBHOOK_SECRET": SECRET,
        "STRIPE_LIBRARY_WEBHOOK_SECRET": "whsec_bench_library_" + "l" * 32,
        "AERELION_DB_POOL_SIZE": str(CONNECTIONS),
    }
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "bench.billing:bench_app"),
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


def stored_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM public.stripe_events").fetchone()[0]


def measure(database_url: str) -> None:
    deploy.push(database_url, Settings(REPO, {}), out=lambda _: None)
    prepare(database_url)
    with tempfile.TemporaryDirectory() as folder:
        warm, timed = Path(folder) / "warm.txt", Path(folder) / "timed.txt"
        write_events(warm, 4_000, "warm")
        write_events(timed, 6_000 * SECONDS, "timed")
        for events in (warm, timed):
            (Path(folder) / f"{events.stem}.lua").write_text(wrk_script(events))
        with serving(database_url) as base:
            run_wrk(base + PATH, Path(folder) / "warm.lua", 2)
            before = stored_events(database_url)
            rps = run_wrk(base + PATH, Path(folder) / "timed.lua", SECONDS)
            applied = stored_events(database_url) - before
        with psycopg.connect(database_url) as conn:
            script_text = pgbench_script(conn)
        script = Path(folder) / "receive.sql"
        script.write_text(script_text)
        run_pgbench(database_url, script, 2)  # warm up
        tps = run_pgbench(database_url, script, SECONDS)

    print(
        f"webhook (wrk)      : {rps:9.1f} events/s applied, {CONNECTIONS} connections, "
        f"{SECONDS} s ({applied} events stored)"
    )
    print(f"pgbench, same SQL  : {tps:9.1f} events/s, {CONNECTIONS} connections, {SECONDS} s")
    print(f"ratio              : {rps / tps:9.2f} of pgbench")


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make bench installs it)")
    with bench_database() as url:
        measure(url)


if __name__ == "__main__":
    main()
