"""The activation lifecycle on real n8n 2.8.4 nodes: two pool nodes (capacity 5 each) and a
third as the fallback, started once for the module on ephemeral loopback ports. About
twenty activations: least-load placement with the surplus on the fallback, webhooks that
answer at `aerelion/{activation_request_id}`, pause/resume/retrigger, revoke deleting the
workflow and its credentials, rollback after n8n refuses an activation,
runtime-credentials for the node's own runtime secret, and the agents' heartbeat workflows
(a real heartbeat from n8n, an idempotent deploy, restart and redeploy).

Skipped when n8n is not installed (`.ci/run` installs it), except under
AERELION_REQUIRE_N8N=1, where a missing install fails."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from aerelion import deploy, local_identity
from aerelion.app import App, create_app
from aerelion.standins.server import LoopbackServer
from n8n_peers import RealNodes, installed
from n8n_support import (
    SERVICE,
    Client,
    add_node,
    import_automation,
    loads,
    mapping,
    new_client,
    node_settings,
    template,
)
from support import JWT_SECRET, client_of, running_app, settings_for

pytestmark = [pytest.mark.n8n, pytest.mark.anyio]


@pytest.fixture(scope="module")
def real_nodes() -> Iterator[RealNodes]:
    if not installed():
        if os.environ.get("AERELION_REQUIRE_N8N") == "1":
            pytest.fail("n8n is not installed in .aerelion/n8n (AERELION_REQUIRE_N8N=1)")
        pytest.skip("n8n is not installed: .ci/run installs tests/peers/n8n into .aerelion/n8n")
    nodes = RealNodes(3)
    nodes.start()
    print(f"3 real n8n nodes ready with API keys in {nodes.started_in:.1f}s")
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture(scope="module")
def world(create_database, real_nodes) -> Iterator[tuple[str, psycopg.Connection, uuid.UUID]]:
    url = create_database()
    deploy.push(url, settings_for(), out=lambda _: None)
    a, b, _ = real_nodes.nodes
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        add_node(conn, a.url, "A", 5)
        add_node(conn, b.url, "B", 5)
        agent = import_automation(conn, template("Real lead router"), "real-lead-router")
        yield url, conn, agent


@pytest.fixture
async def app(world, real_nodes) -> AsyncIterator[App]:
    a, b, fallback = real_nodes.nodes
    settings = node_settings(
        {"A": (a.api_key, "runtime-A"), "B": (b.api_key, "runtime-B")},
        (fallback.url, fallback.api_key),
    )
    async with running_app(world[0], settings) as app:
        yield app


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as client:
        yield client


def api(node, method: str, path: str) -> httpx.Response:
    return httpx.request(
        method, f"{node.url}/api/v1{path}", headers={"X-N8N-API-KEY": node.api_key}, timeout=30
    )


async def activate(http: httpx.AsyncClient, client: Client) -> httpx.Response:
    return await http.post(
        "/functions/v1/duplicate-and-activate",
        json={"activationRequestId": str(client.request_id)},
        headers=SERVICE,
    )


async def test_least_load_placement_and_webhooks_on_real_nodes(world, http, real_nodes):
    _, conn, agent = world
    a, b, fallback = real_nodes.nodes
    clients = [new_client(conn, agent) for _ in range(12)]
    gate = asyncio.Semaphore(4)

    async def one(client: Client) -> httpx.Response:
        async with gate:
            return await activate(http, client)

    answers = await asyncio.gather(*(one(c) for c in clients))
    assert [r.status_code for r in answers] == [200] * 12, [r.text for r in answers]
    assert loads(conn) == {"A": (5, 5), "B": (5, 5)}
    by_node = {a.url: 0, b.url: 0, fallback.url: 0}
    for client, answer in zip(clients, answers, strict=True):
        body = answer.json()
        by_node[body["node"]] += 1
        node = next(n for n in real_nodes.nodes if n.url == body["node"])
        workflow = api(node, "GET", f"/workflows/{body['workflowId']}").json()
        assert workflow["active"] is True
        assert body["webhookUrl"] == f"{node.url}/webhook/aerelion/{client.request_id}"
    assert by_node == {a.url: 5, b.url: 5, fallback.url: 2}
    assert sum(mapping(conn, c.request_id)["used_fallback"] for c in clients) == 2
    hook = httpx.post(answers[0].json()["webhookUrl"], json={"ping": 1}, timeout=30)
    assert hook.status_code == 200, hook.text


async def test_the_lifecycle_on_a_real_node(world, http, real_nodes):
    _, conn, agent = world
    client = new_client(conn, agent)
    body = (await activate(http, client)).json()
    node = next(n for n in real_nodes.nodes if n.url == body["node"])
    workflow_id = body["workflowId"]

    def provision(action: str) -> httpx.Response:
        return http.post(
            "/functions/v1/n8n-provision",
            json={"action": action, "activationRequestId": str(client.request_id)},
            headers=client.headers(),
        )

    assert (await provision("pause")).status_code == 200
    assert api(node, "GET", f"/workflows/{workflow_id}").json()["active"] is False
    assert (await provision("resume")).status_code == 200
    assert api(node, "GET", f"/workflows/{workflow_id}").json()["active"] is True
    fired = await provision("retrigger")
    assert fired.json()["success"] is True, fired.text
    row = mapping(conn, client.request_id)
    if row["n8n_instance_id"]:
        label = conn.execute(
            "select label from public.n8n_instances where id = %s", [row["n8n_instance_id"]]
        ).fetchone()["label"]
        secret = f"runtime-{label}"
    else:
        secret = app_fallback_secret(http)
    credentials = await http.get(
        f"/functions/v1/runtime-credentials?activation_id={client.request_id}",
        headers={"authorization": f"Bearer {secret}"},
    )
    assert credentials.status_code == 200, credentials.text
    assert credentials.json()["credentials"]["openai"] == {"api_key": "sk-client-secret"}
    credential_ids = row["n8n_credential_ids"]
    revoked = await provision("revoke")
    assert revoked.status_code == 200, revoked.text
    assert api(node, "GET", f"/workflows/{workflow_id}").status_code == 404
    assert all(api(node, "DELETE", f"/credentials/{c}").status_code == 404 for c in credential_ids)
    assert (await provision("resume")).status_code == 403
    assert (await provision("retrigger")).status_code == 403


def app_fallback_secret(http: httpx.AsyncClient) -> str:
    transport = http._transport  # the app's settings hold the fallback's runtime secret
    return transport.app.runtime.settings.get("N8N_RUNTIME_SECRET")  # type: ignore[attr-defined]


async def test_rollback_after_n8n_refuses_the_activation(world, http, real_nodes):
    _, conn, _ = world
    broken = template(
        "Broken router",
        extra_nodes=[
            {
                "name": "Nope",
                "type": "n8n-nodes-base.doesNotExist",
                "typeVersion": 1,
                "position": [400, 0],
                "parameters": {},
            }
        ],
    )
    agent = import_automation(conn, broken, "broken-router")
    conn.execute("update public.n8n_instances set current_load = 0")  # room on the pool again
    conn.execute(
        "update public.n8n_mappings set capacity_reserved = false, status = 'revoked'"
        " where status <> 'revoked'"
    )
    client = new_client(conn, agent)
    answer = await activate(http, client)
    assert answer.status_code == 502, answer.text
    assert "Unrecognized node type" in answer.json()["message"]
    row = mapping(conn, client.request_id)
    assert (
        row["status"] == "error" and row["n8n_workflow_ids"] == [] and not row["capacity_reserved"]
    )
    assert sum(load for load, _ in loads(conn).values()) == 0
    for node in real_nodes.nodes:
        names = [w["name"] for w in api(node, "GET", "/workflows?limit=250").json()["data"]]
        assert not any("Broken router" in name for name in names)


# -- the agents' heartbeat workflows ---------------------------------------------------------


def test_agent_workflows_beat_deploy_idempotently_and_heal_on_a_real_node(world, real_nodes):
    """Deployed to a real node, an agent's workflow really calls agent-heartbeat (the app
    served on loopback, the key from the n8n credential); a deploy changes only what
    differs, and nothing the second time; a deactivated workflow comes back active; a
    deleted one is redeployed."""
    database, conn, _ = world
    a, b, _ = real_nodes.nodes
    key = "heartbeat-" + uuid.uuid4().hex
    settings = node_settings(
        {"A": (a.api_key, "runtime-A"), "B": (b.api_key, "runtime-B")}, None, HEARTBEAT_SECRET=key
    )
    server = LoopbackServer(
        create_app(settings=settings, database_url=database), "aerelion-app", lifespan="on"
    )
    url = server.start()
    try:
        conn.execute(
            "update public.system_registry set value = %s"
            " where namespace = 'app' and key = 'functions_url'",
            [f"{url}/functions/v1"],
        )
        conn.execute("update public.agent_registry set heartbeat_interval_s = 2 where id = 'AG-06'")
        email = f"op-{uuid.uuid4().hex[:8]}@example.com"
        admin_id = local_identity.create_user(conn, email, admin=True)
        token = local_identity.sign(local_identity.user_claims(admin_id, email), JWT_SECRET)
        headers = {"authorization": f"Bearer {token}"}

        def call(name: str, body: dict) -> httpx.Response:
            return httpx.post(f"{url}/functions/v1/{name}", json=body, headers=headers, timeout=60)

        first = call("deploy-agent-workflows", {})
        assert first.status_code == 200, first.text
        assert first.json()["summary"]["created"] == 7, first.text
        node = next(n for n in real_nodes.nodes if n.url == first.json()["node"])
        ids = {r["agent_id"]: r["workflow_id"] for r in first.json()["results"]}
        assert all(api(node, "GET", f"/workflows/{i}").json()["active"] for i in ids.values())

        deadline = time.monotonic() + 60
        beat = None
        while beat is None and time.monotonic() < deadline:
            beat = conn.execute(
                "select status, metadata from public.agent_heartbeats"
                " where agent_id = 'AG-06' and metadata ->> 'source' = 'n8n_cron' limit 1"
            ).fetchone()
            time.sleep(0.5)
        assert beat is not None, "no heartbeat arrived from n8n"
        assert beat["status"] == "NOMINAL" and beat["metadata"]["module"] == "CHRONICLER"
        conn.execute("update public.agent_registry set heartbeat_interval_s = 7200")

        # the interval changed back: only AG-06's workflow is updated, then nothing changes
        again = call("deploy-agent-workflows", {}).json()["summary"]
        assert (again["updated"], again["unchanged"]) == (1, 6), again
        third = call("deploy-agent-workflows", {}).json()["summary"]
        assert third["unchanged"] == 7, third

        assert api(node, "POST", f"/workflows/{ids['AG-03']}/deactivate").status_code == 200
        healed = call("agent-auto-heal", {"agent_id": "AG-03"})
        assert healed.status_code == 200, healed.text
        assert healed.json()["actions"][0]["action"] == "restarted"
        assert api(node, "GET", f"/workflows/{ids['AG-03']}").json()["active"] is True

        assert api(node, "DELETE", f"/workflows/{ids['AG-04']}").status_code == 200
        redeployed = call("agent-auto-heal", {"agent_id": "AG-04"})
        assert redeployed.status_code == 200, redeployed.text
        action = redeployed.json()["actions"][0]
        assert action["action"] == "redeployed" and action["workflow_id"] != ids["AG-04"]
        assert api(node, "GET", f"/workflows/{action['workflow_id']}").json()["active"] is True
    finally:
        server.stop()
