"""The headline flow end to end: hostinger-provision answers 202, the client polls its job
through PostgREST's transaction, the worker buys the VPS at (a stand-in of) Hostinger
exactly once and brings it up, with every failure the API documents."""

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

from aerelion import deploy, job_runner
from aerelion.app import App
from aerelion.standins.hostinger import N8N_TEMPLATE_ID, HostingerStandIn
from aerelion.vault import Context, Sealed, Vault
from aerelion.worker import Worker
from support import REPO, RUNTIME_SECRETS, act_as, client_of, new_user, running_app, settings_for

pytestmark = pytest.mark.anyio

TOKEN = "hostinger-test-token-" + "t" * 20
KEY = base64.b64encode(os.urandom(32)).decode()
CRON = RUNTIME_SECRETS["TEST_CRON_SECRET"]


@pytest.fixture
def stand_in() -> Iterator[HostingerStandIn]:
    with HostingerStandIn(token=TOKEN, setup_seconds=0.3) as server:
        yield server


@pytest.fixture
def database(fresh_database) -> str:
    deploy.push(fresh_database, settings_for(), out=lambda _: None)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for key, value in {
            "regions": '{"us-east-1": 17, "eu-west-1": 19}',
            "template_id": str(N8N_TEMPLATE_ID),
            "poll_interval_s": "0",
            "confirm_purchase_s": "2",
            "setup_timeout_s": "30",
        }.items():
            conn.execute(
                "update public.system_registry set value = %s"
                " where namespace = 'hostinger' and key = %s",
                [value, key],
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
        CRON_SECRET=CRON,
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


def subscribe(db, user, tier) -> None:
    if tier == "ghost":
        db.execute(
            "insert into public.purchases (email, item_type, tier, amount_cents, status, user_id)"
            " values ('g@example.com', 'tier', 'ghost', 2500000, 'completed', %s)",
            [user],
        )
        return
    db.execute(
        "insert into public.client_billing (user_id, current_price_id, status) values"
        " (%s, (select value from public.system_registry"
        "       where namespace = 'stripe' and key = 'price_' || %s), 'active')",
        [user, tier],
    )


class People:
    def __init__(self, db) -> None:
        from aerelion import local_identity

        self.ids = {
            "alice": new_user(db),  # The Operator: 1 VPS
            "bob": new_user(db),  # no tier: no VPS
            "root": new_user(db, admin=True),
            "gina": new_user(db),  # The Ghost: 3 VPS
        }
        subscribe(db, self.ids["alice"], "operator")
        subscribe(db, self.ids["gina"], "ghost")
        self._identity = local_identity

    def headers(self, name: str) -> dict[str, str]:
        user_id = self.ids[name]
        claims = self._identity.user_claims(user_id, f"{name}@example.com")
        token = self._identity.sign(claims, RUNTIME_SECRETS["SUPABASE_JWT_SECRET"])
        return {"authorization": f"Bearer {token}"}


@pytest.fixture
def people(db) -> People:
    return People(db)


async def request_vps(client, people, who="alice", **body) -> httpx.Response:
    payload = {"plan": "starter", "region": "us-east-1", **body}
    return await client.post(
        "/functions/v1/hostinger-provision", json=payload, headers=people.headers(who)
    )


def poll(db, job_id, role: str, user_id=None) -> list[dict]:
    """The transaction PostgREST runs for GET /rest/v1/provisioning_queue?id=eq.<id>."""
    with db.transaction():
        act_as(db, role, user_id)
        return db.execute(
            "select status, attempt_count, last_error, scheduled_at, vps_instance_id"
            " from public.provisioning_queue where id = %s",
            [job_id],
        ).fetchall()


def job(db, job_id) -> dict:
    return db.execute("select * from public.provisioning_queue where id = %s", [job_id]).fetchone()


async def drive(worker, db, job_id, until=("completed", "failed"), rounds: int = 200) -> dict:
    """Run the worker until the job reaches one of `until`."""
    for _ in range(rounds):
        current = job(db, job_id)
        if current["status"] in until:
            return current
        await worker.run_once(10)
        await asyncio.sleep(0.05)
    pytest.fail(f"job stuck in {job(db, job_id)['status']}")


# -- the happy path ----------------------------------------------------------------------


async def test_a_vps_from_request_to_running(client, people, db, worker, stand_in):
    alice = people.ids["alice"]
    response = await request_vps(client, people, notes="first node")
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True and body["status"] == "queued"
    assert "Poll provisioning_queue" in body["message"]
    job_id = body["job_id"]

    (queued,) = poll(db, job_id, "authenticated", alice)
    assert (queued["status"], queued["attempt_count"], queued["vps_instance_id"]) == (
        "queued",
        0,
        None,
    )
    assert poll(db, job_id, "authenticated", people.ids["bob"]) == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        poll(db, job_id, "anon")

    done = await drive(worker, db, job_id)
    assert (done["status"], done["attempt_count"]) == ("completed", 1)
    (seen,) = poll(db, job_id, "authenticated", alice)
    assert seen["status"] == "completed" and seen["vps_instance_id"] is not None

    vps = db.execute(
        "select * from public.vps_instances where id = %s", [seen["vps_instance_id"]]
    ).fetchone()
    assert vps["status"] == "active" and vps["ip_address"].startswith("203.0.113.")
    assert vps["hostname"] == f"aerelion-{job_id}"
    assert vps["n8n_instance_url"] == f"http://{vps['ip_address']}:5678"
    assert stand_in.purchases == 1

    # The secrets were generated here, sealed to the row, and sent to Hostinger.
    vault = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": KEY})
    ssh = vault.open_json(
        Sealed(
            vps["encrypted_ssh_private_key"],
            vps["ssh_encryption_iv"],
            vps["ssh_encryption_tag"],
            vps["ssh_key_version"],
        ),
        Context("vps_instances", "encrypted_ssh_private_key", str(vps["id"])),
    )
    assert ssh["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert ssh["public_key"].startswith("ssh-ed25519 ")
    (purchase,) = [
        body
        for method, path, body in stand_in.requests
        if method == "POST" and path == "/api/vps/v1/virtual-machines"
    ]
    assert purchase["item_id"] == "hostingercom-vps-kvm1-usd-1m"
    assert purchase["setup"]["password"] == ssh["root_password"]
    assert purchase["setup"]["public_key"]["key"] == ssh["public_key"]
    assert purchase["setup"]["data_center_id"] == 17
    assert purchase["setup"]["enable_backups"] is False

    # The owner reads the instance, never its ciphertext.
    with db.transaction():
        act_as(db, "authenticated", alice)
        assert db.execute(
            "select status from public.vps_instances where id = %s", [vps["id"]]
        ).fetchone() == {"status": "active"}
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
        act_as(db, "authenticated", alice)
        db.execute("select encrypted_ssh_private_key from public.vps_instances")


async def test_the_cron_trigger_runs_due_jobs_once(client, people, db):
    job_id = (await request_vps(client, people)).json()["job_id"]
    assert (await client.post("/functions/v1/queue-processor")).status_code == 401
    refused = await client.post(
        "/functions/v1/queue-processor", headers={"authorization": "Bearer nope"}
    )
    assert refused.status_code == 401
    response = await client.post(
        "/functions/v1/queue-processor", headers={"authorization": f"Bearer {CRON}"}
    )
    assert response.status_code == 200
    result = response.json()
    assert result["processed"] == 1
    assert result["results"][0]["id"] == job_id
    assert result["results"][0]["status"] in ("waiting", "completed")


# -- bad input changes nothing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"plan": "galactic"}, 400, "22023"),
        ({"region": "moon-1"}, 400, "22023"),
        ({"notes": "x" * 501}, 400, "invalid_request"),
        ({"activation_request_id": "not-a-uuid"}, 400, "invalid_request"),
        ({"activation_request_id": str(uuid.uuid4())}, 400, "22023"),
        ({"target_user_id": str(uuid.uuid4())}, 403, "42501"),
        ({"plan": 5}, 400, "invalid_request"),
        ({"color": "red"}, 400, "invalid_request"),
        ({"idempotency_key": ""}, 400, "invalid_request"),
    ],
)
async def test_each_bad_field_is_refused_and_no_job_is_made(client, people, db, body, status, code):
    response = await request_vps(client, people, **body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert db.execute("select count(*) as n from public.provisioning_queue").fetchone() == {"n": 0}


async def test_entitlement_quota_rate_limit_and_idempotency(client, people, db):
    # No tier, no VPS.
    refused = await request_vps(client, people, "bob")
    assert (refused.status_code, refused.json()["message"]) == (403, "your plan allows 0 VPS")
    # The Operator: one.
    assert (await request_vps(client, people, "alice")).status_code == 202
    assert (await request_vps(client, people, "alice")).status_code == 403
    # Admins bypass the tier, not the quota of requests in progress.
    bob = str(people.ids["bob"])
    for _ in range(2):
        assert (await request_vps(client, people, "root", target_user_id=bob)).status_code == 202
    third = await request_vps(client, people, "root", target_user_id=bob)
    assert (third.status_code, third.json()["message"]) == (
        429,
        "too many VPS requests in progress",
    )
    # The same idempotency key is the same job.
    first = await request_vps(client, people, "gina", idempotency_key="k1")
    again = await request_vps(client, people, "gina", idempotency_key="k1")
    assert first.json()["job_id"] == again.json()["job_id"]
    # The rate limit counts the caller's accepted requests.
    db.execute(
        "update public.system_registry set value = '1'"
        " where namespace = 'hostinger' and key = 'provision_rate_max'"
    )
    limited = await request_vps(client, people, "gina")
    assert (limited.status_code, limited.json()["code"]) == (429, "PT429")


# -- Hostinger's failures -------------------------------------------------------------------


async def test_a_lost_purchase_reply_never_buys_twice(client, people, db, worker, stand_in):
    stand_in.lose_next_purchase_reply()
    job_id = (await request_vps(client, people)).json()["job_id"]
    done = await drive(worker, db, job_id)
    assert done["status"] == "completed"
    assert stand_in.purchases == 1
    assert [r for r in stand_in.requests if r[0] == "POST" and r[1].endswith("virtual-machines")]
    assert done["attempt_count"] == 1  # finding the VM again was waiting, not a new attempt


async def test_an_unknown_purchase_outcome_fails_and_tells_the_operators(
    client, people, db, worker, stand_in
):
    stand_in.drop_next_purchase()  # the reply is lost and nothing was bought
    job_id = (await request_vps(client, people)).json()["job_id"]
    done = await drive(worker, db, job_id)
    assert done["status"] == "failed"
    assert "outcome is unknown" in done["last_error"]
    purchases = [
        r for r in stand_in.requests if r[0] == "POST" and r[1] == "/api/vps/v1/virtual-machines"
    ]
    assert len(purchases) == 1  # never a second purchase
    notice = db.execute(
        "select type, severity from public.admin_notifications where metadata ->> 'job_id' = %s",
        [job_id],
    ).fetchone()
    assert notice == {"type": "provisioning_failed", "severity": "error"}


async def test_a_validation_error_is_final_with_the_apis_message(
    client, people, db, worker, stand_in
):
    db.execute(
        'update public.system_registry set value = \'{"starter": "hostingercom-vps-kvm99-usd-1m"}\''
        " where namespace = 'hostinger' and key = 'plans'"
    )
    job_id = (await request_vps(client, people)).json()["job_id"]
    done = await drive(worker, db, job_id)
    assert (done["status"], done["attempt_count"]) == ("failed", 1)
    assert done["last_error"].startswith("Hostinger refused the purchase: ")
    assert done["purchase_started_at"] is None  # nothing was bought: a retry may buy


async def test_rate_limited_purchase_retries_with_backoff(client, people, db, worker, stand_in):
    stand_in.fail_next("purchase", 429)
    job_id = (await request_vps(client, people)).json()["job_id"]
    await worker.run_once(10)
    retrying = job(db, job_id)
    assert (retrying["status"], retrying["attempt_count"]) == ("retrying", 1)
    assert retrying["purchase_started_at"] is None
    delay = db.execute(
        "select extract(epoch from scheduled_at - now())::int as s"
        " from public.provisioning_queue where id = %s",
        [job_id],
    ).fetchone()["s"]
    assert 55 <= delay <= 60
    db.execute("update public.provisioning_queue set scheduled_at = now() where id = %s", [job_id])
    done = await drive(worker, db, job_id)
    assert (done["status"], done["attempt_count"], stand_in.purchases) == ("completed", 2, 1)


async def test_a_vm_left_initial_is_set_up_through_the_api(client, people, db, worker, stand_in):
    stand_in.leave_initial_next_purchase()
    job_id = (await request_vps(client, people)).json()["job_id"]
    done = await drive(worker, db, job_id)
    assert done["status"] == "completed"
    assert any(path.endswith("/setup") for _, path, _ in stand_in.requests)


async def test_a_vm_in_error_fails_the_job(client, people, db, worker, stand_in):
    stand_in.error_next_setup()
    job_id = (await request_vps(client, people)).json()["job_id"]
    done = await drive(worker, db, job_id)
    assert done["status"] == "failed"
    status = db.execute(
        "select status from public.vps_instances where id = %s", [done["vps_instance_id"]]
    ).fetchone()
    assert status == {"status": "error"}


async def test_a_vm_stuck_creating_fails_at_the_deadline(client, people, db, worker, stand_in):
    stand_in.stuck_creating = True
    db.execute(
        "update public.system_registry set value = '1'"
        " where namespace = 'hostinger' and key = 'setup_timeout_s'"
    )
    job_id = (await request_vps(client, people)).json()["job_id"]
    await worker.run_once(10)
    assert job(db, job_id)["status"] == "waiting"
    await asyncio.sleep(1.1)
    done = await drive(worker, db, job_id)
    # The waits were not counted; giving up was a (final) failed attempt.
    assert (done["status"], done["attempt_count"]) == ("failed", 2)
    assert "wait_running" in done["last_error"]


async def test_the_admin_endpoint_lists_and_retries(client, people, db, worker, stand_in):
    stand_in.fail_next("purchase", 422)
    job_id = (await request_vps(client, people)).json()["job_id"]
    await drive(worker, db, job_id)
    listed = await client.post(
        "/functions/v1/provisioning-jobs",
        json={"action": "list", "status": "failed"},
        headers=people.headers("root"),
    )
    assert [j["id"] for j in listed.json()["jobs"]] == [job_id]
    refused = await client.post(
        "/functions/v1/provisioning-jobs", json={"action": "list"}, headers=people.headers("alice")
    )
    assert refused.status_code == 403
    retried = await client.post(
        "/functions/v1/provisioning-jobs",
        json={"action": "retry", "job_id": job_id},
        headers=people.headers("root"),
    )
    assert retried.json()["job"]["status"] == "queued"
    assert (await drive(worker, db, job_id))["status"] == "completed"


def test_the_readme_shows_the_supabase_py_poll():
    readme = (REPO / "README.md").read_text()
    assert 'table("provisioning_queue")' in readme
