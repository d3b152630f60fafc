"""A client's provisioned server, day to day: list, metrics through the cache, reboot until
the worker sees it running, scale requests, and the one-time credential view — against
a real database and the Hostinger stand-in, with its faults."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from aerelion import deploy, job_runner, local_identity
from aerelion.app import App
from aerelion.standins.hostinger import N8N_TEMPLATE_ID, HostingerStandIn
from aerelion.vault import Context, Sealed, Vault
from aerelion.worker import Worker
from support import (
    RUNTIME_SECRETS,
    client_of,
    new_user,
    present_human_signature,
    running_app,
    settings_for,
)

pytestmark = pytest.mark.anyio

TOKEN = "hostinger-test-token-" + "v" * 20
KEY = base64.b64encode(os.urandom(32)).decode()
METRICS = "/api/vps/v1/virtual-machines/{}/metrics"


@pytest.fixture
def stand_in() -> Iterator[HostingerStandIn]:
    with HostingerStandIn(token=TOKEN, setup_seconds=0.2) as server:
        yield server


@pytest.fixture
def database(fresh_database) -> str:
    deploy.push(fresh_database, settings_for(), out=lambda _: None)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for namespace, key, value in [
            ("hostinger", "regions", '{"us-east-1": 17}'),
            ("hostinger", "template_id", str(N8N_TEMPLATE_ID)),
            ("hostinger", "poll_interval_s", "0"),
            ("vps", "reboot_poll_s", "0"),
        ]:
            conn.execute(
                "insert into public.system_registry (namespace, key, value) values (%s, %s, %s)"
                " on conflict (namespace, key) do update set value = excluded.value",
                [namespace, key, value],
            )
    return fresh_database


@pytest.fixture
def db(database) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
async def app(database, stand_in) -> AsyncIterator[App]:
    settings = settings_for(
        **RUNTIME_SECRETS,
        CREDENTIAL_ENCRYPTION_KEY=KEY,
        HOSTINGER_API_BASE=stand_in.url,
        HOSTINGER_API_TOKEN=TOKEN,
    )
    async with running_app(database, settings) as app:
        yield app


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as client:
        yield client


@pytest.fixture
async def worker(app) -> Worker:
    return await job_runner.build_worker(
        app.runtime.settings, app.runtime.database, listen=False, lease_seconds=30
    )


def headers(user_id: uuid.UUID, **extra: str) -> dict[str, str]:
    claims = local_identity.user_claims(user_id, f"{user_id.hex[:8]}@example.com")
    token = local_identity.sign(claims, RUNTIME_SECRETS["SUPABASE_JWT_SECRET"])
    return {"authorization": f"Bearer {token}", **extra}


async def drive(worker: Worker, db, job_id, rounds: int = 300) -> dict:
    """Run the worker until the job is finished."""
    for _ in range(rounds):
        job = db.execute(
            "select * from public.provisioning_queue where id = %s", [job_id]
        ).fetchone()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        await worker.run_once(10)
        await asyncio.sleep(0.05)
    pytest.fail("the job never finished")


class Node:
    """Alice's provisioned server, Bob a stranger, Root an admin."""

    def __init__(self, db, instance: dict, alice, bob, root) -> None:
        self.db = db
        self.id = instance["id"]
        self.vm_id = int(instance["virtual_machine_id"])
        self.alice, self.bob, self.root = alice, bob, root

    def row(self) -> dict:
        return self.db.execute(
            "select * from public.vps_instances where id = %s", [self.id]
        ).fetchone()


@pytest.fixture
async def node(client, db, worker) -> Node:
    alice, bob, root = new_user(db), new_user(db), new_user(db, admin=True)
    response = await client.post(
        "/functions/v1/hostinger-provision",
        json={"plan": "starter", "region": "us-east-1", "target_user_id": str(alice)},
        headers=headers(root),
    )
    assert response.status_code == 202, response.text
    done = await drive(worker, db, response.json()["job_id"])
    assert done["status"] == "completed", done["last_error"]
    instance = db.execute(
        "select * from public.vps_instances where id = %s", [done["vps_instance_id"]]
    ).fetchone()
    return Node(db, instance, alice, bob, root)


async def orchestrate(client, user, **body) -> httpx.Response:
    return await client.post("/functions/v1/vps-orchestrator", json=body, headers=headers(user))


def sealed_ssh(row: dict) -> dict:
    vault = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": KEY})
    sealed = Sealed(
        row["encrypted_ssh_private_key"],
        row["ssh_encryption_iv"],
        row["ssh_encryption_tag"],
        row["ssh_key_version"],
    )
    return vault.open_json(
        sealed, Context("vps_instances", "encrypted_ssh_private_key", str(row["id"]))
    )


def audit_actions(db, instance_id) -> list[str]:
    return [
        row["action"]
        for row in db.execute(
            "select details ->> 'action' as action from public.edge_function_logs"
            " where function_name = 'audit' and details ->> 'instance_id' = %s order by seq",
            [str(instance_id)],
        ).fetchall()
    ]


# -- ownership ------------------------------------------------------------------------------


async def test_owners_list_their_servers_without_ciphertext(client, node):
    listed = (await orchestrate(client, node.alice, action="list")).json()["instances"]
    assert [item["id"] for item in listed] == [str(node.id)]
    assert listed[0]["status"] == "active" and listed[0]["memory_mb"] is None
    assert not any("encrypted" in key or "encryption" in key for key in listed[0])
    assert (await orchestrate(client, node.bob, action="list")).json()["instances"] == []


@pytest.mark.parametrize(
    ("function", "body"),
    [
        ("vps-orchestrator", {"action": "metrics"}),
        ("vps-orchestrator", {"action": "reboot"}),
        ("vps-orchestrator", {"action": "scale_request", "message": "more"}),
        ("hostinger-metrics", {}),
        ("hostinger-credentials", {}),
        ("hostinger-credentials", {"action": "rotate"}),
    ],
)
async def test_another_user_gets_403_and_nothing_changes(
    client, db, node, stand_in, function, body
):
    before = node.row()
    calls = len(stand_in.requests)
    response = await client.post(
        f"/functions/v1/{function}",
        json={**body, "instance_id": str(node.id)},
        headers=headers(node.bob),
    )
    assert response.status_code == 403, response.text
    assert response.json()["message"] == "ACCESS_DENIED: INSTANCE_NOT_OWNED_BY_USER"
    assert str(node.vm_id) not in response.text and before["ip_address"] not in response.text
    assert node.row() == before and len(stand_in.requests) == calls
    assert db.execute("select count(*) as n from public.vps_scale_requests").fetchone()["n"] == 0

    missing = await client.post(
        f"/functions/v1/{function}",
        json={**body, "instance_id": str(uuid.uuid4())},
        headers=headers(node.bob),
    )
    assert (missing.status_code, missing.json()["message"]) == (404, "INSTANCE_NOT_FOUND")


# -- metrics --------------------------------------------------------------------------------


async def test_a_hundred_rapid_calls_cost_hostinger_one_metrics_call(client, db, node, stand_in):
    def call(index: int):
        if index % 2:
            return client.post(
                "/functions/v1/hostinger-metrics",
                json={"instance_id": str(node.id)},
                headers=headers(node.alice),
            )
        return orchestrate(client, node.alice, action="metrics", instance_id=str(node.id))

    responses = await asyncio.gather(*(call(i) for i in range(100)))
    assert [r.status_code for r in responses] == [200] * 100
    vitals = [r.json()["vitality"] for r in responses]
    metrics_calls = [p for m, p, _ in stand_in.requests if p == METRICS.format(node.vm_id)]
    assert len(metrics_calls) == 1
    assert len({v["sampled_at"] for v in vitals}) == 1
    assert sum(not v["cached"] for v in vitals) == 1
    vitality = vitals[0]
    assert set(vitality) >= {
        "cpu_percent",
        "ram_percent",
        "ram_used_mb",
        "ram_total_mb",
        "disk_percent",
        "disk_used_gb",
        "disk_total_gb",
        "network_in_mbps",
        "network_out_mbps",
        "uptime_seconds",
        "status",
        "sampled_at",
    }
    vm = stand_in.virtual_machine(node.vm_id)
    assert vitality["status"] == "active" and vitality["ram_total_mb"] == vm["memory"]
    assert 0 < vitality["ram_percent"] < 100 and 0 < vitality["cpu_percent"] <= 20
    assert node.row()["memory_mb"] == vm["memory"]  # the size is read once and kept

    db.execute(  # the window passes: one more call
        "update public.vps_metrics_cache set sampled_at = sampled_at - interval '1 minute'"
    )
    await asyncio.gather(*(call(i) for i in range(10)))
    assert len([p for m, p, _ in stand_in.requests if p == METRICS.format(node.vm_id)]) == 2


async def test_hostinger_failures_are_clear_errors_and_release_the_fetch(client, node, stand_in):
    body = {"action": "metrics", "instance_id": str(node.id)}
    stand_in.fail_next("metrics", 429, retry_after=30)
    limited = await orchestrate(client, node.alice, **body)
    assert limited.status_code == 503 and limited.headers["retry-after"] == "30"
    assert limited.json()["code"] == "HOSTINGER_RATE_LIMITED"
    assert "HOSTINGER_ERROR: 429" in limited.json()["message"]

    stand_in.fail_next("metrics", 502, times=3)  # the client's GET retries are used up
    down = await orchestrate(client, node.alice, **body)
    assert (down.status_code, down.json()["code"]) == (502, "HOSTINGER_UNAVAILABLE")
    assert TOKEN not in down.text

    recovered = await orchestrate(client, node.alice, **body)  # no lease left behind
    assert recovered.status_code == 200 and recovered.json()["vitality"]["cached"] is False


async def test_metrics_wait_for_a_vm(client, db, node):
    db.execute("update public.vps_instances set virtual_machine_id = null where id = %s", [node.id])
    response = await orchestrate(client, node.alice, action="metrics", instance_id=str(node.id))
    assert (response.status_code, response.json()["message"]) == (409, "VM_NOT_YET_ASSIGNED")


# -- reboot ---------------------------------------------------------------------------------


async def test_a_reboot_shows_rebooting_until_the_worker_sees_the_vm_running(
    client, db, node, worker, stand_in
):
    body = {"action": "reboot", "instance_id": str(node.id)}
    response = await orchestrate(client, node.alice, **body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["status"] == "rebooting" and reply["reboot"]["name"] == "restart"
    row = node.row()
    assert (row["status"], row["reboot_action_id"]) == ("rebooting", reply["reboot"]["id"])

    again = await orchestrate(client, node.alice, **body)
    assert (again.status_code, again.json()["message"]) == (409, "INSTANCE_NOT_READY: REBOOTING")

    watch = await drive(worker, db, reply["watch_job_id"])
    assert watch["status"] == "completed" and watch["result"]["vm_state"] == "running"
    row = node.row()
    assert (row["status"], row["rebooting_since"], row["reboot_action_id"]) == (
        "active",
        None,
        None,
    )
    assert "vps:reboot" in audit_actions(db, node.id)

    limited = await orchestrate(client, node.alice, **body)  # one per 5 minutes
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) <= 300


async def test_a_refused_reboot_leaves_the_server_active_and_is_not_counted(client, node, stand_in):
    body = {"action": "reboot", "instance_id": str(node.id)}
    stand_in.fail_next("restart", 503)
    refused = await orchestrate(client, node.alice, **body)
    assert (refused.status_code, refused.json()["code"]) == (502, "HOSTINGER_UNAVAILABLE")
    assert node.row()["status"] == "active"
    assert (await orchestrate(client, node.alice, **body)).status_code == 200


async def test_a_vm_that_never_comes_back_leaves_the_server_in_error(
    client, db, node, worker, stand_in
):
    db.execute(
        "insert into public.system_registry (namespace, key, value) values"
        " ('vps', 'reboot_timeout_s', '1')"
    )
    reply = (
        await orchestrate(client, node.alice, action="reboot", instance_id=str(node.id))
    ).json()
    stand_in.set_state(node.vm_id, "stopping")  # and it stays there
    await asyncio.sleep(1.1)
    watch = await drive(worker, db, reply["watch_job_id"])
    assert watch["status"] == "failed" and "did not come back" in watch["last_error"]
    row = node.row()
    assert row["status"] == "error" and "did not come back" in row["notes"]


# -- scale requests -------------------------------------------------------------------------


async def test_scale_requests_are_limited_raised_and_resolved_by_admins(client, db, node):
    body = {"action": "scale_request", "instance_id": str(node.id), "message": "4 vCPU please"}
    logged = await orchestrate(client, node.alice, **body)
    assert logged.status_code == 200 and logged.json()["message"] == "SCALE_REQUEST_LOGGED"
    request_id = logged.json()["scale_request"]["id"]
    notice = db.execute(
        "select * from public.admin_notifications where type = 'scale_request'"
    ).fetchone()
    assert notice["title"] == f"SCALE_REQUEST: Node {str(node.id)[:8].upper()}"
    assert (notice["body"], notice["severity"]) == ("4 vCPU please", "warning")

    limited = await orchestrate(client, node.alice, **body)
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert db.execute("select count(*) as n from public.vps_scale_requests").fetchone()["n"] == 1

    resolve = {"action": "resolve_scale_request", "scale_request_id": request_id}
    denied = await orchestrate(client, node.alice, **resolve, resolution="resolved")
    assert denied.status_code == 403
    done = await orchestrate(client, node.root, **resolve, resolution="resolved", message="done")
    assert done.status_code == 200 and done.json()["scale_request"]["status"] == "resolved"
    twice = await orchestrate(client, node.root, **resolve, resolution="declined")
    assert twice.status_code == 409
    assert audit_actions(db, node.id) == ["vps:scale_request", "vps:scale_resolved"]
    assert db.execute("select read from public.admin_notifications").fetchone()["read"] is True


# -- credentials ----------------------------------------------------------------------------


async def view(client, user, node, **extra_headers) -> httpx.Response:
    return await client.post(
        "/functions/v1/hostinger-credentials",
        json={"instance_id": str(node.id)},
        headers=headers(user, **extra_headers),
    )


async def test_the_credential_view_is_one_time_and_a_rotation_reopens_it(
    client, db, node, stand_in
):
    stored = sealed_ssh(node.row())
    first = await view(client, node.alice, node)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    shown = first.json()
    assert shown["first_view"] is True
    assert shown["ssh"] == {
        "private_key": stored["private_key"],
        "public_key": stored["public_key"],
        "root_password": stored["root_password"],
    }
    assert shown["n8n"]["username"] == "admin" and shown["n8n"]["url"].endswith(":5678")

    second = (await view(client, node.alice, node)).json()
    assert (second["first_view"], second["ssh"], second["n8n"]) == (False, None, None)
    assert second["message"].startswith("CREDENTIALS_ALREADY_VIEWED")

    # An admin needs a human signature, and reading does not spend the owner's view.
    assert (await view(client, node.root, node)).status_code == 403
    token = f"ths-{uuid.uuid4().hex}"
    with db.transaction():
        present_human_signature(db, node.root)
        db.execute(
            "update public.human_signatures set token_hash = sha256(convert_to(%s, 'UTF8'))"
            " where user_id = %s",
            [token, node.root],
        )
    admin_read = (await view(client, node.root, node, **{"x-ths-token": token})).json()
    assert admin_read["admin_read"] is True and admin_read["ssh"] == shown["ssh"]

    rotated = await client.post(
        "/functions/v1/hostinger-credentials",
        json={"instance_id": str(node.id), "action": "rotate"},
        headers=headers(node.alice),
    )
    assert rotated.status_code == 200, rotated.text
    vm = stand_in._vms[node.vm_id]
    assert vm.password_changes == 1 and len(vm.public_key_ids) == 1
    fresh = (await view(client, node.alice, node)).json()
    assert fresh["first_view"] is True
    assert fresh["ssh"]["root_password"] != stored["root_password"]
    assert fresh["ssh"]["public_key"] == stand_in.public_keys[next(iter(vm.public_key_ids))]["key"]
    assert (await view(client, node.alice, node)).json()["ssh"] is None

    assert audit_actions(db, node.id) == [
        "vps:credentials_view",
        "vps:credentials_view",
        "vps:credentials_view",
        "vps:credentials_rotated",
        "vps:credentials_view",
        "vps:credentials_view",
    ]
    logs = db.execute(
        "select message, details::text as d from public.edge_function_logs"
    ).fetchall()
    assert not any(stored["root_password"] in row["message"] + row["d"] for row in logs)

    # A second rotation retires the first key from the account.
    again = await client.post(
        "/functions/v1/hostinger-credentials",
        json={"instance_id": str(node.id), "action": "rotate"},
        headers=headers(node.alice),
    )
    assert again.status_code == 200 and len(stand_in.public_keys) == 1


async def test_a_refused_rotation_keeps_the_old_credentials(client, node, stand_in):
    before = node.row()
    stand_in.fail_next("root_password", 422)
    refused = await client.post(
        "/functions/v1/hostinger-credentials",
        json={"instance_id": str(node.id), "action": "rotate"},
        headers=headers(node.alice),
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "HOSTINGER_REFUSED")
    after = node.row()
    assert after["encrypted_ssh_private_key"] == before["encrypted_ssh_private_key"]
