"""The command center against a real database and the app served on a loopback port:
heartbeats and their derived state, manual pulses, the provenance log's stream tickets and
live rows, `GET /status`, `aerelion logs` and the after-action report."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from aerelion import cli, cli_ops, local_identity
from aerelion.app import create_app
from aerelion.standins.server import LoopbackServer
from support import RUNTIME_SECRETS, SERVICE_KEY, new_user, settings_for

HEARTBEAT_KEY = "heartbeat-" + "k" * 40
SECRETS = {**RUNTIME_SECRETS, "HEARTBEAT_SECRET": HEARTBEAT_KEY}


@pytest.fixture(scope="module")
def server(database) -> Iterator[str]:
    app = create_app(settings=settings_for(**SECRETS), database_url=database)
    loopback = LoopbackServer(app, "aerelion-app", lifespan="on")
    yield loopback.start()
    loopback.stop()


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as client:
        yield client


@pytest.fixture
def db(database) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def bearer(user_id: uuid.UUID) -> dict[str, str]:
    claims = local_identity.user_claims(user_id, f"{user_id.hex[:8]}@example.com")
    return {
        "authorization": "Bearer " + local_identity.sign(claims, SECRETS["SUPABASE_JWT_SECRET"])
    }


def log_row(db, request_id: str) -> dict[str, Any]:
    """The request's log row (a served request writes it just after its response)."""
    deadline = time.monotonic() + 5
    while True:
        row = db.execute(
            "select * from public.edge_function_logs where details ->> 'request_id' = %s",
            [request_id],
        ).fetchone()
        if row is not None or time.monotonic() > deadline:
            return row
        time.sleep(0.02)


# -- heartbeats -----------------------------------------------------------------------------


def beat(http, key: str | None = HEARTBEAT_KEY, **body: Any) -> httpx.Response:
    headers = {"x-heartbeat-key": key} if key is not None else {}
    return http.post("/functions/v1/agent-heartbeat", json=body, headers=headers)


def test_heartbeats_need_the_shared_key(http, db):
    before = db.execute("select count(*) as n from public.agent_heartbeats").fetchone()["n"]
    assert beat(http, None, agent_id="AG-01").status_code == 401
    assert beat(http, "wrong-" + "k" * 40, agent_id="AG-01").status_code == 401
    after = db.execute("select count(*) as n from public.agent_heartbeats").fetchone()["n"]
    assert after == before
    accepted = beat(http, agent_id="AG-01", message="cycle ok")
    assert accepted.status_code == 200
    assert accepted.json()["heartbeat"]["status"] == "NOMINAL"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"agent_id": "AG-99"}, 400, "Invalid agent_id"),
        ({"agent_id": "AG-01", "status": "PANIC"}, 400, None),
        ({"agent_id": "AG-01", "message": "x" * 1001}, 400, None),
        ({"agent_id": "../etc"}, 400, None),
        ({"agent_id": "AG-01", "metadata": {"blob": "y" * 20_000}}, 400, None),
    ],
)
def test_bad_heartbeats_are_refused_and_change_nothing(http, db, body, status, message):
    before = db.execute("select count(*) as n from public.agent_heartbeats").fetchone()["n"]
    response = beat(http, **body)
    assert response.status_code == status, response.text
    if message:
        assert response.json()["message"] == message
    assert db.execute("select count(*) as n from public.agent_heartbeats").fetchone()["n"] == before


def test_a_heartbeat_leaves_the_originals_log_row(http, db):
    response = beat(http, agent_id="AG-03", status="ERROR", message="watchdog tripped")
    row = log_row(db, response.headers["x-request-id"])
    assert (row["function_name"], row["level"], row["message"]) == (
        "agent-heartbeat",
        "error",
        "AG-03: watchdog tripped",
    )
    assert row["details"]["agent_id"] == "AG-03" and row["status_code"] == 200
    drift = beat(http, agent_id="AG-03", status="DRIFT")
    assert log_row(db, drift.headers["x-request-id"])["message"] == "AG-03: DRIFT"
    assert log_row(db, drift.headers["x-request-id"])["level"] == "warn"


def test_an_agent_is_offline_after_twice_its_interval_of_silence(db):
    db.execute(
        "insert into public.agent_heartbeats (agent_id, status, created_at) values"
        " ('AG-04', 'NOMINAL', now() - interval '4 hours 1 minute'),"
        " ('AG-05', 'DRIFT', now() - interval '3 hours 59 minutes')"
    )
    with db.transaction():
        db.execute(
            "select set_config('role', 'service_role', true),"
            " set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true)"
        )
        states = {
            r["agent_id"]: r["state"] for r in db.execute("select * from public.agent_states()")
        }
    assert (states["AG-04"], states["AG-05"]) == ("OFFLINE", "DRIFT")
    assert states["AG-07"] == "OFFLINE"  # never heard from


def test_manual_pulses_are_for_admins_and_registered_agents(http, db):
    user, admin = new_user(db), new_user(db, admin=True)
    url = "/functions/v1/nexus-pulse"
    assert http.post(url, json={"agent_id": "AG-02"}, headers=bearer(user)).status_code == 403
    missing = http.post(url, json={"agent_id": "AG-42"}, headers=bearer(admin))
    assert (missing.status_code, missing.json()["message"]) == (404, "Agent not registered")
    bad = http.post(url, json={"agent_id": "AG-02", "status": "WHATEVER"}, headers=bearer(admin))
    assert bad.status_code == 400
    sent = http.post(
        url, json={"agent_id": "AG-02", "telemetry": {"cpu": 3}}, headers=bearer(admin)
    )
    assert sent.status_code == 200
    metadata = sent.json()["heartbeat"]["metadata"]
    assert metadata["cpu"] == 3 and metadata["source"] == "nexus_pulse"
    assert metadata["triggered_by"] == str(admin)
    assert sent.json()["heartbeat"]["message"] == "MANUAL_PULSE_SIGNAL"


# -- the live log -----------------------------------------------------------------------------


def ticket(http, user) -> str:
    response = http.post("/nexus/logs/ticket", headers=bearer(user))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()["ticket"]


def stream_events(server: str, query: str, found: queue.Queue, stop: threading.Event) -> None:
    with (
        httpx.Client(base_url=server, timeout=httpx.Timeout(30, read=30)) as client,
        client.stream("GET", "/nexus/logs/stream?" + query) as response,
    ):
        found.put(("status", response.status_code))
        event = None
        for text in response.iter_lines():
            if stop.is_set():
                return
            if text.startswith("event: "):
                event = text[len("event: ") :]
            elif text.startswith("data: "):
                found.put((event, json.loads(text[len("data: ") :])))


def test_the_stream_sends_new_rows_and_a_ticket_works_once(http, db, server):
    admin, user = new_user(db, admin=True), new_user(db)
    assert http.post("/nexus/logs/ticket", headers=bearer(user)).status_code == 403
    assert http.post("/nexus/logs/ticket").status_code == 401
    one = ticket(http, admin)
    found: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(
        target=stream_events, args=(server, f"ticket={one}", found, stop), daemon=True
    )
    reader.start()
    assert found.get(timeout=10) == ("status", 200)
    time.sleep(0.3)  # the stream is listening
    marker = f"live-row-{uuid.uuid4().hex}"
    beat(http, agent_id="AG-06", message=marker)
    deadline = time.monotonic() + 5
    seen = False
    while time.monotonic() < deadline and not seen:
        event, data = found.get(timeout=max(0.1, deadline - time.monotonic()))
        if event == "rows":
            seen = any(row["message"] == f"AG-06: {marker}" for row in data)
    stop.set()
    assert seen, "the new row never reached the stream"

    reused = http.get(f"/nexus/logs/stream?ticket={one}")
    assert reused.status_code == 401 and reused.json()["code"] == "PT401"
    stale = ticket(http, admin)
    db.execute("update public.log_stream_tickets set expires_at = now() - interval '1 s'")
    assert http.get(f"/nexus/logs/stream?ticket={stale}").status_code == 401
    assert http.get("/nexus/logs/stream?ticket=forged").status_code == 401


def test_pages_and_summary_are_for_admins(http, db):
    admin, user = new_user(db, admin=True), new_user(db)
    assert http.get("/nexus/logs/rows", headers=bearer(user)).status_code == 403
    rows = http.get("/nexus/logs/rows?level=error&limit=5", headers=bearer(admin)).json()["rows"]
    assert rows and all(row["level"] == "error" for row in rows)
    seqs = [row["seq"] for row in rows]
    assert seqs == sorted(seqs, reverse=True)
    agent = http.get("/nexus/logs/rows?agent=AG-03", headers=bearer(admin)).json()["rows"]
    assert agent and {row["agent_id"] for row in agent} == {"AG-03"}
    assert http.get("/nexus/logs/rows?level=loud", headers=bearer(admin)).status_code == 400
    assert http.get("/nexus/logs/rows?before=-1", headers=bearer(admin)).status_code == 400
    summary = http.get("/nexus/logs/summary", headers=bearer(admin)).json()
    assert summary["operational_mode"] == "STEALTH" and len(summary["agents"]) == 7
    assert set(summary["stats"]) == {
        "events",
        "errors",
        "warnings",
        "avg_duration_ms",
        "error_rate",
    }
    page = http.get("/nexus/logs")
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )


# -- status and reports -----------------------------------------------------------------------


def test_status_is_for_admins_and_the_service(http, db):
    admin, user = new_user(db, admin=True), new_user(db)
    assert http.get("/status").status_code == 401
    assert http.get("/status", headers=bearer(user)).status_code == 403
    status = http.get("/status", headers=bearer(admin)).json()
    assert set(status) >= {"queue", "nodes", "agents", "audit", "webhooks", "operational_mode"}
    assert status["audit"]["unsealed_rows"] > 0
    service = http.get("/status", headers={"apikey": SERVICE_KEY})
    assert service.status_code == 200 and len(service.json()["agents"]) == 7


def test_the_after_action_report_states_what_the_data_says(http, db, database):
    db.execute("delete from public.agent_heartbeats")  # heartbeats are not append-only
    db.execute(
        "insert into public.agent_heartbeats (agent_id, status, message) values"
        " ('AG-01', 'NOMINAL', 'ok'), ('AG-01', 'NOMINAL', 'ok'), ('AG-01', 'NOMINAL', 'ok'),"
        " ('AG-02', 'DRIFT', 'schema drift on orders')"
    )
    admin = new_user(db, admin=True)
    response = http.post("/functions/v1/generate-aar", json={}, headers=bearer(admin))
    assert response.status_code == 200, response.text
    report = response.json()["markdown"]
    for section in (
        "## EXECUTIVE SUMMARY",
        "## AGENT STATUS MATRIX",
        "## DRIFT & INCIDENT LOG",
        "## EDGE FUNCTION TELEMETRY",
        "## RISK ASSESSMENT",
        "## RECOMMENDATIONS",
    ):
        assert section in report
    assert "| AG-01 | THE SENTINEL | NOMINAL | 3 | 3 | 0 | 0 |" in report
    assert "| AG-02 | THE LIBRARIAN | DRIFT | 1 | 0 | 1 | 0 |" in report
    assert "DRIFT AG-02: schema drift on orders" in report
    logged = db.execute(
        "select count(*) as total, count(*) filter (where level = 'error') as errors"
        " from public.edge_function_logs where created_at >= now() - interval '24 hours'"
    ).fetchone()
    assert f"{logged['errors']} errors" in report.split("## EDGE FUNCTION TELEMETRY")[1]
    assert response.json()["risk"] in ("ELEVATED", "HIGH")

    page = http.post("/functions/v1/generate-aar", json={"format": "html"}, headers=bearer(admin))
    assert page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and "<table>" in page.text and "AG-02" in page.text
    assert (
        http.post("/functions/v1/generate-aar", json={}, headers=bearer(new_user(db))).status_code
        == 403
    )

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["report", "aar", "--db-url", database, "--window", "24h"]) == 0
    assert "| AG-02 | THE LIBRARIAN | DRIFT | 1 | 0 | 1 | 0 |" in out.getvalue()


def test_aerelion_logs_filters_and_follows(http, db, database):
    marker = f"follow-{uuid.uuid4().hex}"
    written = beat(http, agent_id="AG-05", status="ERROR", message="before " + marker)
    log_row(db, written.headers["x-request-id"])
    out = io.StringIO()
    with redirect_stdout(out):
        cli.main(["logs", "--db-url", database, "--agent", "AG-05", "--level", "error", "--json"])
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows and {(r["agent_id"], r["level"]) for r in rows} == {("AG-05", "error")}
    assert rows[-1]["message"] == f"AG-05: before {marker}"  # oldest first, newest last

    params = {"before": None, "after": None, "limit": 100, "level": None, "function": None,
              "agent": "AG-05", "since": None}  # fmt: skip
    received: queue.Queue = queue.Queue()

    def following() -> None:
        with (
            psycopg.connect(database, row_factory=dict_row) as conn,
            psycopg.connect(database, autocommit=True) as listener,
        ):
            for row in cli_ops.follow(conn, listener, params, rows[-1]["seq"]):
                received.put(row)
                return

    thread = threading.Thread(target=following, daemon=True)
    thread.start()
    time.sleep(0.3)
    beat(http, agent_id="AG-05", message="after " + marker)
    row = received.get(timeout=5)
    assert row["message"] == f"AG-05: after {marker}"
    thread.join(timeout=5)
    assert "AG-05" in cli_ops.line(row, colour=False)
