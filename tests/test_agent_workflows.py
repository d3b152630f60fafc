"""The agents' heartbeat workflows on an n8n stand-in (the same public-API contract as the
real nodes of test_n8n_real.py): an idempotent deploy with the key in a credential, real
healing (restart, redeploy, failure raised to the operators), and the worker healing
agents in DRIFT, ERROR or OFFLINE once per cooldown."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from aerelion import cli, deploy, local_identity
from aerelion.agent_workflows import AgentWorkflows, key_fingerprint
from aerelion.app import App
from aerelion.standins.n8n import N8nStandIn
from n8n_support import add_node, node_settings
from support import JWT_SECRET, client_of, running_app, settings_for

pytestmark = pytest.mark.anyio

HEARTBEAT_KEY = "heartbeat-key-" + uuid.uuid4().hex
FUNCTIONS_URL = "http://127.0.0.1:9/functions/v1"


@pytest.fixture(scope="module")
def node() -> Iterator[N8nStandIn]:
    with N8nStandIn(api_key=f"key-{uuid.uuid4().hex}") as server:
        yield server


@pytest.fixture
def world(fresh_database, node) -> Iterator[tuple[str, psycopg.Connection]]:
    node.reset()
    deploy.push(fresh_database, settings_for(), out=lambda _: None)
    with psycopg.connect(fresh_database, autocommit=True, row_factory=dict_row) as conn:
        add_node(conn, node.url, "A", 10)
        conn.execute(
            "update public.system_registry set value = %s"
            " where namespace = 'app' and key = 'functions_url'",
            [FUNCTIONS_URL],
        )
        yield fresh_database, conn


def settings(node: N8nStandIn, key: str = HEARTBEAT_KEY):
    return node_settings({"A": (node._key, "runtime-A")}, None, HEARTBEAT_SECRET=key)


@pytest.fixture
async def app(world, node) -> AsyncIterator[App]:
    async with running_app(world[0], settings(node)) as app:
        yield app


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as client:
        yield client


def admin_headers(conn: psycopg.Connection, admin: bool = True) -> dict[str, str]:
    email = f"op-{uuid.uuid4().hex[:8]}@example.com"
    user_id = local_identity.create_user(conn, email, admin=admin)
    token = local_identity.sign(local_identity.user_claims(user_id, email), JWT_SECRET)
    return {"authorization": f"Bearer {token}"}


async def deploy_agents(http, conn, headers: dict[str, str] | None = None) -> httpx.Response:
    return await http.post(
        "/functions/v1/deploy-agent-workflows", json={}, headers=headers or admin_headers(conn)
    )


async def heal(http, conn, agent_id: str) -> httpx.Response:
    return await http.post(
        "/functions/v1/agent-auto-heal", json={"agent_id": agent_id}, headers=admin_headers(conn)
    )


def workflow_of(conn, agent_id: str) -> dict:
    return conn.execute(
        "select * from public.agent_workflows where agent_id = %s", [agent_id]
    ).fetchone()


def beat(conn, agent_id: str, status: str) -> None:
    conn.execute(
        "insert into public.agent_heartbeats (agent_id, status, message) values (%s, %s, 'x')",
        [agent_id, status],
    )


async def test_deploy_is_idempotent_and_keeps_the_key_out_of_the_workflows(world, http, node):
    _, conn = world
    first = await deploy_agents(http, conn)
    assert first.status_code == 200, first.text
    assert first.json()["summary"] == {
        "total": 7,
        "unchanged": 0,
        "created": 7,
        "updated": 0,
        "activated": 0,
        "redeployed": 0,
        "error": 0,
    }
    assert len(node.active_workflows()) == 7 and len(node.credentials) == 1
    (credential,) = node.credentials.values()
    assert credential["type"] == "httpHeaderAuth"
    assert credential["data"] == {"name": "x-heartbeat-key", "value": HEARTBEAT_KEY}
    workflow = node.workflows[workflow_of(conn, "AG-03")["workflow_id"]]
    assert workflow["name"] == "AERELION_AG-03_WATCHMAN_HEARTBEAT"
    request = workflow["nodes"][1]["parameters"]
    assert request["url"] == f"{FUNCTIONS_URL}/agent-heartbeat"
    assert HEARTBEAT_KEY not in str(workflow) and HEARTBEAT_KEY not in first.text
    assert workflow["nodes"][0]["parameters"]["rule"]["interval"] == [
        {"field": "hours", "hoursInterval": 2}
    ]

    logs = "select count(*) as n from public.edge_function_logs"
    admin = admin_headers(conn)
    before = conn.execute(logs).fetchone()["n"]
    requests = len(node.requests)
    second = await deploy_agents(http, conn, admin)
    assert second.json()["summary"]["unchanged"] == 7
    assert [m for m, _ in node.requests[requests:] if m != "GET"] == []  # only reads
    assert conn.execute(logs).fetchone()["n"] == before + 1  # the request's own row
    assert len(node.workflows) == 7


async def test_a_new_heartbeat_key_replaces_the_credential(world, http, node):
    database, conn = world
    await deploy_agents(http, conn)
    (old,) = node.credentials
    rotated_settings = settings(node, "rotated-" + HEARTBEAT_KEY)
    async with running_app(database, rotated_settings) as app, client_of(app) as other:
        rotated = await deploy_agents(other, conn)
    assert rotated.json()["summary"]["updated"] == 7
    (new,) = node.credentials
    assert new != old and node.credentials[new]["data"]["value"] == "rotated-" + HEARTBEAT_KEY
    row = workflow_of(conn, "AG-01")
    assert row["key_fingerprint"] == key_fingerprint("rotated-" + HEARTBEAT_KEY)
    assert row["credential_id"] == new


async def test_deploy_needs_a_node_the_key_and_an_admin(world, http, node):
    _, conn = world
    refused = await http.post(
        "/functions/v1/deploy-agent-workflows", json={}, headers=admin_headers(conn, admin=False)
    )
    assert refused.status_code == 403
    conn.execute("update public.n8n_instances set status = 'maintenance'")
    no_node = await deploy_agents(http, conn)
    assert no_node.status_code == 409 and no_node.json()["message"].startswith("No active n8n")
    assert node.requests == []


async def test_heal_restarts_a_deactivated_workflow_and_tells_the_operators(world, http, node):
    _, conn = world
    await deploy_agents(http, conn)
    workflow_id = workflow_of(conn, "AG-04")["workflow_id"]
    node.workflows[workflow_id]["active"] = False
    beat(conn, "AG-04", "ERROR")
    healed = await heal(http, conn, "AG-04")
    assert healed.status_code == 200, healed.text
    body = healed.json()
    assert body["previous_state"] == "ERROR" and body["actions"][0]["action"] == "restarted"
    assert node.workflows[workflow_id]["active"] is True
    switches = [path.rsplit("/", 1)[1] for _, path in node.requests]
    assert [op for op in switches if op in ("activate", "deactivate")][-2:] == [
        "deactivate",
        "activate",
    ]
    notice = conn.execute(
        "select type, severity from public.admin_notifications where id = %s",
        [body["actions"][0]["notification_id"]],
    ).fetchone()
    assert notice == {"type": "auto_heal", "severity": "warning"}
    beats = conn.execute(
        "select count(*) as n from public.agent_heartbeats where agent_id = 'AG-04'"
    ).fetchone()
    assert beats["n"] == 1  # no cosmetic heartbeat rows


async def test_heal_redeploys_a_missing_workflow(world, http, node):
    _, conn = world
    await deploy_agents(http, conn)
    gone = workflow_of(conn, "AG-05")["workflow_id"]
    del node.workflows[gone]
    healed = await heal(http, conn, "AG-05")
    assert healed.status_code == 200, healed.text
    action = healed.json()["actions"][0]
    assert action["action"] == "redeployed" and action["workflow_id"] != gone
    assert node.workflows[action["workflow_id"]]["active"] is True
    assert workflow_of(conn, "AG-05")["workflow_id"] == action["workflow_id"]


async def test_a_failed_heal_is_raised_as_critical(world, http, node):
    _, conn = world
    await deploy_agents(http, conn)
    node.fail_next("activate", 500, times=3)
    failed = await heal(http, conn, "AG-02")
    assert failed.status_code == 502 and failed.json()["code"] == "AUTO_HEAL_FAILED"
    notice = conn.execute(
        "select type, severity from public.admin_notifications"
        " where metadata ->> 'agent_id' = 'AG-02' order by created_at desc limit 1"
    ).fetchone()
    assert notice == {"type": "auto_heal_failure", "severity": "critical"}
    log = conn.execute(
        "select level from public.edge_function_logs where function_name = 'agent-auto-heal'"
        " and details ->> 'agent_id' = 'AG-02' and details ? 'ok'"
    ).fetchone()
    assert log["level"] == "error"
    assert workflow_of(conn, "AG-02")["last_heal_outcome"] == "failed"


async def test_healing_an_agent_never_deployed_says_so(world, http):
    _, conn = world
    answer = await heal(http, conn, "AG-07")
    assert answer.status_code == 409 and answer.json()["code"] == "NOT_DEPLOYED"
    unknown = await heal(http, conn, "AG-99")
    assert unknown.status_code == 404


async def test_the_worker_heals_drift_error_and_long_offline_once_per_cooldown(
    world, app, http, node
):
    _, conn = world
    await deploy_agents(http, conn)
    agents = AgentWorkflows(app.runtime.database, app.runtime.settings)
    for agent_id in ("AG-01", "AG-02", "AG-03", "AG-04", "AG-05", "AG-06", "AG-07"):
        beat(conn, agent_id, "NOMINAL")
    assert await agents.heal_due() == []
    beat(conn, "AG-01", "DRIFT")
    beat(conn, "AG-02", "ERROR")
    # AG-03 silent: OFFLINE, but only healed once its workflow had the time to beat
    conn.execute("delete from public.agent_heartbeats where agent_id = 'AG-03'")
    healed = {h["agent_id"]: h for h in await agents.heal_due()}
    assert sorted(healed) == ["AG-01", "AG-02"] and all(h["success"] for h in healed.values())
    assert await agents.heal_due() == []  # the cooldown
    conn.execute(
        "update public.agent_workflows set last_verified_at = now() - interval '5 hours'"
        " where agent_id = 'AG-03'"
    )
    later = await agents.heal_due()
    assert [(h["agent_id"], h["previous_state"]) for h in later] == [("AG-03", "OFFLINE")]
    trigger = conn.execute(
        "select details ->> 'trigger' as t from public.edge_function_logs"
        " where function_name = 'agent-auto-heal' and details ->> 'agent_id' = 'AG-03'"
    ).fetchone()
    assert trigger["t"] == "worker"


def test_operators_deploy_and_heal_from_the_command_line(world, node, monkeypatch, capsys):
    database, conn = world
    monkeypatch.setenv("HEARTBEAT_SECRET", HEARTBEAT_KEY)
    monkeypatch.setenv("N8N_KEY_A", node._key)
    monkeypatch.delenv("AERELION_PUBLIC_URL", raising=False)
    assert cli.main(["agents", "deploy", "--db-url", database]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["created"] == 7
    node.workflows[workflow_of(conn, "AG-07")["workflow_id"]]["active"] = False
    assert cli.main(["agents", "heal", "AG-07", "--db-url", database]) == 0
    assert json.loads(capsys.readouterr().out)["actions"][0]["action"] == "restarted"
    assert cli.main(["agents", "heal", "AG-99", "--db-url", database]) == 1


async def test_agents_moved_to_another_node_leave_nothing_behind(world, http, node):
    database, conn = world
    await deploy_agents(http, conn)
    with N8nStandIn(api_key=f"key-{uuid.uuid4().hex}") as other:
        add_node(conn, other.url, "B", 10)
        both = node_settings(
            {"A": (node._key, "runtime-A"), "B": (other._key, "runtime-B")},
            None,
            HEARTBEAT_SECRET=HEARTBEAT_KEY,
        )
        async with running_app(database, both) as app, client_of(app) as http_b:
            moved = await http_b.post(
                "/functions/v1/deploy-agent-workflows",
                json={"node": "B"},
                headers=admin_headers(conn),
            )
        assert moved.status_code == 200, moved.text
        assert moved.json()["summary"]["created"] == 7
        assert all(r["moved_from"] == [node.url] for r in moved.json()["results"])
        assert len(other.active_workflows()) == 7 and len(other.credentials) == 1
        assert node.workflows == {} and node.credentials == {}
    nodes = conn.execute(
        "select distinct i.label from public.agent_workflows w"
        " join public.n8n_instances i on i.id = w.n8n_instance_id"
    ).fetchall()
    assert [n["label"] for n in nodes] == ["B"]
