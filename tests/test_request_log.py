"""Every request leaves exactly one log row; a refused request writes nothing else; handlers
act as the caller so row-level security decides."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from support import RUNTIME_SECRETS, SERVICE_KEY

pytestmark = [pytest.mark.anyio, pytest.mark.security]


def log_row(url: str, request_id: str) -> dict:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "select * from public.edge_function_logs where details ->> 'request_id' = %s",
            [request_id],
        ).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def table_counts(url: str) -> dict[str, int]:
    """Rows of every table in public and auth."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables"
            " where schemaname in ('public', 'auth') order by 1"
        ).fetchall()
        return {
            name: conn.execute(f"select count(*) from {name}").fetchone()[0] for (name,) in tables
        }


async def test_accepted_and_refused_requests_each_leave_one_row(client, users, runtime_database):
    accepted = await client.post(
        "/functions/v1/echo", json={"name": "a", "count": 1, "mode": "WAR_ROOM"}
    )
    row = log_row(runtime_database, accepted.headers["x-request-id"])
    assert row["function_name"] == "echo"
    assert row["status_code"] == 200
    assert row["level"] == "info"
    assert row["message"] == "echoed WAR_ROOM"
    assert row["ip_address"] == "203.0.113.7"
    assert row["duration_ms"] >= 0
    assert row["user_id"] is None

    refused = await client.get("/functions/v1/admin-report", headers=users["alice"].headers())
    row = log_row(runtime_database, refused.headers["x-request-id"])
    assert (row["status_code"], row["level"], row["user_id"]) == (403, "warn", users["alice"].id)
    assert row["message"] == "forbidden: Admin access required"
    assert row["details"]["code"] == "forbidden"

    crashed = await client.post("/functions/v1/crash")
    row = log_row(runtime_database, crashed.headers["x-request-id"])
    assert (row["status_code"], row["level"]) == (500, "error")
    assert "sk_live" not in str(row)


async def test_a_refused_request_writes_nothing_else(client, users, runtime_database):
    alice, bob = users["alice"], users["bob"]
    attempts = [
        client.post("/functions/v1/profile-update", json={"profile_id": str(bob.id)}),
        client.post(
            "/functions/v1/profile-update",
            json={"profile_id": str(alice.id), "display_name": 5},
            headers=alice.headers(),
        ),
        client.post(
            "/functions/v1/profile-update",
            content=b'{"profile_id": ',
            headers={**alice.headers(), "content-type": "application/json"},
        ),
        client.post(
            "/functions/v1/profile-update",
            content=b"x" * (2 * 1024 * 1024),
            headers={**alice.headers(), "content-type": "application/json"},
        ),
        client.post(
            "/functions/v1/profile-update",
            json={"profile_id": str(alice.id), "display_name": "Mallory"},
            headers=alice.headers(exp=1),
        ),
        client.post(
            "/functions/v1/profile-update",
            json={"profile_id": str(alice.id), "display_name": "Rolled back", "fail_after": True},
            headers=alice.headers(),
        ),
        client.get("/functions/v1/profile-update", headers=alice.headers()),
        client.post("/functions/v1/service-task", headers={"apikey": "sb_secret_forged"}),
        client.post("/functions/v1/keyed", headers={"x-test-key": "guess"}),
        client.post("/functions/v1/no-such-function"),
        client.options(
            "/functions/v1/echo",
            headers={"origin": "https://evil.example.net", "access-control-request-method": "POST"},
        ),
    ]
    before = table_counts(runtime_database)
    ids = []
    for attempt in attempts:
        response = await attempt
        assert response.status_code >= 400, response.text
        ids.append(response.headers["x-request-id"])
    after = table_counts(runtime_database)
    logs, limits = "public.edge_function_logs", "public.rate_limits"
    assert after[logs] - before[logs] == len(ids)
    # Only the well-formed request whose handler failed counts against Alice's rate limit.
    assert after[limits] - before[limits] <= 1
    assert {k: v for k, v in after.items() if k not in (logs, limits)} == {
        k: v for k, v in before.items() if k not in (logs, limits)
    }
    for request_id in ids:
        log_row(runtime_database, request_id)


async def test_log_rows_never_hold_credentials_or_bodies(client, users, runtime_database):
    secrets = [users["alice"].token(), SERVICE_KEY, *RUNTIME_SECRETS.values()]
    responses = [
        await client.get("/functions/v1/whoami", headers=users["alice"].headers()),
        await client.post("/functions/v1/service-task", headers={"apikey": SERVICE_KEY}),
        await client.post(
            "/functions/v1/keyed", headers={"x-test-key": RUNTIME_SECRETS["TEST_HOOK_KEY"]}
        ),
        await client.post(
            "/functions/v1/echo", json={"name": "body-secret", "count": 1, "mode": "STEALTH"}
        ),
    ]
    for response in responses:
        text = str(log_row(runtime_database, response.headers["x-request-id"]))
        assert "body-secret" not in text
        for secret in secrets:
            assert secret not in text


async def test_handlers_act_as_the_caller(client, users):
    alice, root = users["alice"], users["root"]
    mine = (
        await client.get("/functions/v1/whoami", headers={**alice.headers(), "x-custom": "kept"})
    ).json()
    assert mine["db_role"] == "authenticated"
    assert mine["visible_profiles"] == 1  # RLS: only her own profile
    assert mine["statement_timeout"] == "8s"
    assert mine["headers"]["x-custom"] == "kept"
    assert "authorization" not in mine["headers"]
    assert mine["method"] == "GET"
    assert mine["path"] == "/functions/v1/whoami"
    everyone = (await client.get("/functions/v1/whoami", headers=root.headers())).json()
    assert everyone["visible_profiles"] >= 3  # admins read every profile


async def test_rls_decides_what_a_handler_may_change(client, users, runtime_database):
    alice, bob = users["alice"], users["bob"]
    response = await client.post(
        "/functions/v1/profile-update",
        json={"profile_id": str(bob.id), "display_name": "hijacked"},
        headers=alice.headers(),
    )
    assert response.json() == {"updated": 0}
    own = await client.post(
        "/functions/v1/profile-update",
        json={"profile_id": str(alice.id), "display_name": "Alice"},
        headers=alice.headers(),
    )
    assert own.json() == {"updated": 1}
    with psycopg.connect(runtime_database) as conn:
        names = dict(
            conn.execute(
                "select id, display_name from public.profiles where id = any(%s)",
                [[alice.id, bob.id]],
            ).fetchall()
        )
    assert names == {alice.id: "Alice", bob.id: None}


async def test_a_failing_handler_rolls_its_writes_back(client, users, runtime_database):
    alice = users["alice"]
    response = await client.post(
        "/functions/v1/profile-update",
        json={"profile_id": str(alice.id), "display_name": "Never", "fail_after": True},
        headers=alice.headers(),
    )
    assert response.status_code == 400  # 22012 division by zero
    with psycopg.connect(runtime_database) as conn:
        name = conn.execute(
            "select display_name from public.profiles where id = %s", [alice.id]
        ).fetchone()[0]
    assert name != "Never"


async def test_admins_read_the_log_through_rls(client, users):
    root = (await client.get("/functions/v1/admin-report", headers=users["root"].headers())).json()
    assert root["visible_logs"] > 0
