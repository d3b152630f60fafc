"""The security suite (`make test-security`): the real app, every function in `functions/`,
attacked from outside.

* Cross-tenant: user B, with a valid JWT, names user A's resources at every endpoint.
  CROSS_TENANT has one entry per function: a new function fails until it gets one.
* CORS: foreign origins get no CORS header, allowed ones exactly their origin.
* The PostgREST path: every SQL function `authenticated` may execute is called as B with
  A's ids, the way PostgREST runs `/rpc` (SQL_CALLS: one entry per function), and is
  refused to `anon` unless ANON_EXECUTABLE says it is meant for anon.
* Fuzzing: every operation of `/openapi.json` with Hypothesis (valid and hostile bodies,
  content types, query strings and headers), with no credentials, a user's JWT and the
  credentials the function's policy asks for.
* Canaries: a live-key-like secret and a password-like one, planted in body, query and
  headers, never reach a log row or a response.

One migrated database, with the Stripe and Hostinger stand-ins on 127.0.0.1 (ephemeral
ports) and every secret configured, so nothing answers 503 for want of configuration.
Requests go through httpx's ASGI transport, which returns only once the request's log row
is written, driven from synchronous code (and so from Hypothesis) through an anyio portal.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from aerelion import deploy, local_identity, ths
from aerelion.app import App, create_app
from aerelion.auth import (
    AdminPolicy,
    AnyOf,
    NoPolicy,
    Policy,
    SecretPolicy,
    ServicePolicy,
    SignaturePolicy,
    ThsPolicy,
    UserPolicy,
)
from aerelion.config import Settings
from aerelion.errors import status_for_sqlstate
from aerelion.functions import Function
from aerelion.provisioning import N8N_COLUMN, SSH_COLUMN
from aerelion.standins.hostinger import HostingerStandIn
from aerelion.standins.stripe import StripeStandIn
from aerelion.stripe_client import API_VERSION
from aerelion.vault import Context, Vault
from support import ALLOWED_ORIGIN, REPO, RUNTIME_SECRETS, SERVICE_KEY, User, settings_for

pytestmark = pytest.mark.security

FUNCTIONS_DIR = REPO / "functions"
SECRETS = {
    **RUNTIME_SECRETS,
    "THS_SIGNING_SECRET": "ths-signing-secret-" + "t" * 40,
    "CREDENTIAL_ENCRYPTION_KEY": base64.b64encode(b"k" * 32).decode(),
    "CRON_SECRET": "cron-secret-" + "c" * 40,
    "HEARTBEAT_SECRET": "heartbeat-secret-" + "b" * 40,
    "STRIPE_SECRET_KEY": "sk_test_" + "x" * 32,
    "STRIPE_LIBRARY_WEBHOOK_SECRET": "whsec_" + "l" * 32,
    "STRIPE_PORTAL_WEBHOOK_SECRET": "whsec_" + "p" * 32,
    "HOSTINGER_API_TOKEN": "hostinger-token-" + "h" * 24,
}
# Which secret signs each webhook receiver's events (`signature` policy).
WEBHOOK_SECRETS = {
    "library-webhook": "STRIPE_LIBRARY_WEBHOOK_SECRET",
    "stripe-portal-webhook": "STRIPE_PORTAL_WEBHOOK_SECRET",
}

# Two canaries: one shaped like a live key (the log redactor knows that shape, so it also
# proves the redactor), one the redactor cannot recognise (so only not logging it helps).
RUN = uuid.uuid4().hex[:12]
KEY_CANARY = f"sk_live_CANARY{RUN}"
PASSWORD_CANARY = f"Pw-Canary-{RUN}!"
CANARIES = (KEY_CANARY, PASSWORD_CANARY)
# Fields a function stores and shows back later by design (to their owner, or decrypted to
# an admin holding a human signature) get a canary of their own: it must stay out of log
# rows, but may come back in an answer.
STORED_CANARY = f"Stored-Canary-{RUN}"
STORED_FIELDS = {
    ("store-activation-credentials", "serviceName"),  # in the answer
    ("store-activation-credentials", "credentials"),  # read-activation-credentials
    ("store-activation-credentials", "metadata"),  # read-activation-credentials
    ("connect-integration", "connectedEmail"),  # its `status`
    ("connect-integration", "grantedScopes"),  # its `status`
    ("hostinger-provision", "notes"),  # vps-orchestrator `list`, provisioning-jobs
    ("hostinger-provision", "idempotency_key"),  # provisioning-jobs
    ("vps-orchestrator", "message"),  # the scale request in the answer
    # the n8n mesh: an import's report names each file (and what it imported) back
    ("import-n8n-templates", "filename"),
    ("import-n8n-templates", "name"),
    ("import-n8n-templates", "description"),
    ("admin-import-workflows", "filename"),
    ("agent-heartbeat", "metadata"),  # the heartbeat in the answer
    ("nexus-pulse", "telemetry"),  # the pulse's metadata in the answer
}
# Fields whose text is, by design, the request's log message (the provenance trail shows
# an agent's heartbeat message, as the original did): a canary of their own, allowed in log
# rows and answers alike.
LOGGED_CANARY = f"Logged-Canary-{RUN}"
LOGGED_FIELDS = {("agent-heartbeat", "message")}
LOGGED_NEVER = (*CANARIES, STORED_CANARY)
CANARY_HEADERS = {
    "x-api-key": KEY_CANARY,
    "x-password": PASSWORD_CANARY,
    "cookie": f"sb-access-token={KEY_CANARY}; pw={PASSWORD_CANARY}",
}

ERROR_KEYS = {"code", "message", "details", "hint"}
# Tables that change on a refused request by design: its one log row, and the per-caller
# rate-limit counter the runtime bumps before the handler runs.
LOG_TABLE = "public.edge_function_logs"
COUNTER_TABLE = "public.rate_limits"
MAX_EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "25"))  # per operation


def function_names() -> list[str]:
    """The functions in `functions/`, as `load_functions` finds them."""
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/index.py"))


# -- the running app, driven synchronously -----------------------------------------------


class Gateway:
    """The app behind httpx's ASGI transport, called from synchronous code through an anyio
    portal. A call returns once the request's log row is written."""

    def __init__(self, portal: BlockingPortal, app: App) -> None:
        self.portal = portal
        self.app = app
        transport = httpx.ASGITransport(app=app, client=("198.51.100.23", 40123))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://functions.test")

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        call = functools.partial(
            self.client.request,
            method,
            path,
            headers=dict(headers or {}),
            content=content,
            json=json_body,
            params=dict(params or {}),
        )
        return self.portal.call(call)


# -- the database, seen from the test ------------------------------------------------------


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@dataclass(frozen=True)
class Snapshot:
    """A digest of every row of every table in `public` and `auth` (but the log and the
    rate-limit counters), and the log's last sequence number."""

    digests: dict[str, str]
    last_log_seq: int


class Watcher:
    """Snapshots of the whole database, and what changed since one."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        tables = [
            row["name"]
            for row in self.conn.execute(
                "select format('%I.%I', schemaname, tablename) as name from pg_tables"
                " where schemaname in ('public', 'auth') order by 1"
            )
        ]
        self.tables = [t for t in tables if t not in (LOG_TABLE, COUNTER_TABLE)]
        digests = ", ".join(
            f"(select md5(coalesce(string_agg(t::text, E'\\n' order by t::text), ''))"
            f" from {table} t)"
            for table in self.tables
        )
        self._query = (
            f"select array[{digests}] as digests,"
            f" (select coalesce(max(seq), 0) from {LOG_TABLE}) as last_log_seq"
        )

    def snapshot(self) -> Snapshot:
        row = self.conn.execute(self._query).fetchone()
        assert row is not None
        return Snapshot(dict(zip(self.tables, row["digests"], strict=True)), row["last_log_seq"])

    def changed_tables(self, before: Snapshot) -> set[str]:
        after = self.snapshot()
        return {t for t in self.tables if after.digests[t] != before.digests[t]}

    def new_log_rows(self, before: Snapshot) -> list[dict[str, Any]]:
        return self.conn.execute(
            f"select *, l::text as row_text from {LOG_TABLE} l where seq > %s order by seq",
            [before.last_log_seq],
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


# -- the world: users, A's resources, the app ---------------------------------------------


@dataclass
class World:
    url: str
    settings: Settings
    gateway: Gateway
    watcher: Watcher
    stripe: StripeStandIn
    functions: dict[str, Function]
    openapi: dict[str, Any]
    alice: User  # A: the victim, with resources of every kind
    bob: User  # B: the attacker, a plain signed-in user with nothing
    root: User  # an admin, whose human-signature token B tries to borrow
    root_ths: str
    carol: User  # an admin with resources of her own, for requests that should go deep
    carol_ths: str
    alice_ids: dict[str, str]  # what A owns, by name
    carol_ids: dict[str, str]
    alice_markers: dict[str, str]  # A's values B must never see (ids, names, secrets)
    prices: dict[str, str] = field(default_factory=dict)  # tier -> Stripe price id

    def request(self, method: str, name: str, **kwargs: Any) -> httpx.Response:
        return self.gateway.request(method, f"/functions/v1/{name}", **kwargs)

    def fresh_user(self, *, admin: bool = False) -> User:
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
        return User(local_identity.create_user(self.watcher.conn, email, admin=admin), email)

    def human_signature(self, user: User) -> str:
        """A valid X-THS-Token for `user` (the record verify-human-signature would write)."""
        token = f"ths-{uuid.uuid4().hex}"
        self.watcher.conn.execute(
            "insert into public.human_signatures"
            " (user_id, jti, purpose, token_hash, veracity_score, expires_at)"
            " values (%s, %s, 'ths', sha256(convert_to(%s, 'UTF8')), 90,"
            " now() + interval '1 hour')",
            [user.id, uuid.uuid4().hex, token],
        )
        return token


def bearer(user: User) -> dict[str, str]:
    return {"authorization": f"Bearer {user.token()}"}


def stripe_signature(secret: str, payload: bytes) -> str:
    """A `Stripe-Signature` header as Stripe computes it."""
    stamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


def expect_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return response.json()


def seed_activation(conn: psycopg.Connection[dict[str, Any]], owner: User, name: str) -> str:
    """An activation request of `owner` for an automation that needs OpenAI."""
    agent = conn.execute(
        "insert into public.automation_agents (slug, name, status, price_cents,"
        " required_integrations) values (%s, 'Agent', 'published', 4900,"
        ' \'[{"provider": "openai"}]\') returning id',
        [f"agent-{uuid.uuid4().hex[:8]}"],
    ).fetchone()
    assert agent is not None
    row = conn.execute(
        "insert into public.installation_requests (name, email, user_id, automation_id)"
        " values (%s, %s, %s, %s) returning id",
        [name, owner.email, owner.id, agent["id"]],
    ).fetchone()
    assert row is not None
    return str(row["id"])


def catalog_agent(conn: psycopg.Connection[dict[str, Any]]) -> str:
    """A published automation of the seeded catalogue (anyone may buy it)."""
    row = conn.execute(
        "select id from public.automation_agents where slug = 'lead-intake-router'"
    ).fetchone()
    assert row is not None
    return str(row["id"])


def seed_job(conn: psycopg.Connection[dict[str, Any]], owner: User, status: str, key: str) -> str:
    """A provisioning job of `owner`, scheduled far ahead so no queue run claims it."""
    row = conn.execute(
        "insert into public.provisioning_queue (user_id, action, status, idempotency_key,"
        " scheduled_at, payload) values (%s, 'provision_vps', %s, %s,"
        " now() + interval '1 year', '{\"plan\": \"starter\"}') returning id",
        [owner.id, status, key],
    ).fetchone()
    assert row is not None
    return str(row["id"])


def seed_private_resources(world: World, owner: User, secret: str) -> dict[str, str]:
    """Through the real endpoints where a user can make them: an activation request with
    a stored credential, a connected integration, two provisioning jobs and a VPS."""
    conn = world.watcher.conn
    ids: dict[str, str] = {}
    ids["request"] = seed_activation(conn, owner, f"Private Corp {uuid.uuid4().hex[:8]}")
    stored = expect_ok(
        world.request(
            "POST",
            "store-activation-credentials",
            headers=bearer(owner),
            json_body={
                "requestId": ids["request"],
                "credentialType": "api_key",
                "serviceName": "OpenAI",
                "credentials": {"api_key": secret},
            },
        )
    )
    ids["credential"] = stored["credential"]["id"]
    expect_ok(
        world.request(
            "POST",
            "connect-integration",
            headers=bearer(owner),
            json_body={
                "action": "connect",
                "provider": "openai",
                "credentials": {"api_key": secret + "-integration"},
                "connectedEmail": owner.email,
            },
        )
    )
    connection = conn.execute(
        "select id from public.integration_connections where user_id = %s", [owner.id]
    ).fetchone()
    assert connection is not None
    ids["connection"] = str(connection["id"])
    ids["idempotency_key"] = f"idem-{uuid.uuid4().hex}"
    ids["job"] = seed_job(conn, owner, "queued", ids["idempotency_key"])
    ids["failed_job"] = seed_job(conn, owner, "failed", f"idem-{uuid.uuid4().hex}")
    ids["vps"], ids["hostname"] = seed_server(world, owner)
    scale = conn.execute(
        "insert into public.vps_scale_requests (instance_id, user_id, message)"
        " values (%s, %s, 'More memory, please') returning id",
        [ids["vps"], owner.id],
    ).fetchone()
    assert scale is not None
    ids["scale_request"] = str(scale["id"])
    return ids


def seed_server(world: World, owner: User) -> tuple[str, str]:
    """A running server of `owner`: a VM bought at the Hostinger stand-in, and its row with
    SSH and n8n credentials sealed to it, as the provisioning worker leaves them."""
    hostname = f"vps-{uuid.uuid4().hex[:10]}.example.net"
    bought = httpx.post(
        f"{world.settings.get('HOSTINGER_API_BASE')}/api/vps/v1/virtual-machines",
        headers={"authorization": f"Bearer {SECRETS['HOSTINGER_API_TOKEN']}"},
        json={
            "item_id": "hostingercom-vps-kvm1-usd-1m",
            "setup": {"template_id": 1130, "data_center_id": 17, "hostname": hostname},
        },
    )
    assert bought.status_code == 200, bought.text
    vm_id = bought.json()["virtual_machine"]["id"]
    row = world.watcher.conn.execute(
        "insert into public.vps_instances (user_id, status, hostname, ip_address,"
        " virtual_machine_id, n8n_instance_url) values (%s, 'active', %s, '203.0.113.77', %s,"
        " %s) returning id",
        [owner.id, hostname, str(vm_id), f"https://{hostname}"],
    ).fetchone()
    assert row is not None
    instance = str(row["id"])
    vault = Vault.from_environ(world.settings.environ)
    assert vault is not None
    ssh = vault.seal_json(
        {"root_password": f"root-{uuid.uuid4().hex}", "private_key": "-----BEGIN KEY-----x"},
        Context("vps_instances", SSH_COLUMN, instance),
    )
    n8n = vault.seal_json(
        {"username": owner.email, "password": f"n8n-{uuid.uuid4().hex}"},
        Context("vps_instances", N8N_COLUMN, instance),
    )
    world.watcher.conn.execute(
        "update public.vps_instances set encrypted_ssh_private_key = %s, ssh_encryption_iv = %s,"
        " ssh_encryption_tag = %s, ssh_key_version = %s, encrypted_n8n_credentials = %s,"
        " n8n_encryption_iv = %s, n8n_encryption_tag = %s, n8n_key_version = %s where id = %s",
        [
            ssh.ciphertext,
            ssh.iv,
            ssh.tag,
            ssh.key_version,
            n8n.ciphertext,
            n8n.iv,
            n8n.tag,
            n8n.key_version,
            instance,
        ],
    )
    return instance, hostname


def seed_subscription(world: World, owner: User) -> dict[str, str]:
    """A subscription to The Pulse, the way a browser gets one: checkout, payment at Stripe
    (the stand-in), and the success page's verify-purchase."""
    session = expect_ok(
        world.request(
            "POST",
            "create-checkout",
            headers=bearer(owner),
            json_body={"priceId": world.prices["pulse"]},
        )
    )
    world.stripe.complete_checkout(session["session_id"])
    verified = expect_ok(
        world.request(
            "POST",
            "verify-purchase",
            headers=bearer(owner),
            json_body={"session_id": session["session_id"]},
        )
    )
    assert verified["success"] is True, verified
    billing = world.watcher.conn.execute(
        "select stripe_customer_id, subscription_id from public.client_billing where user_id = %s",
        [owner.id],
    ).fetchone()
    assert billing is not None and billing["stripe_customer_id"], billing
    return {
        "session": session["session_id"],
        "customer": billing["stripe_customer_id"],
        "subscription": billing["subscription_id"],
    }


def private_markers(world: World, owner: User, ids: Mapping[str, str]) -> dict[str, str]:
    """Everything of A's another user must never see: ids, names, ciphertexts, secrets."""
    conn = world.watcher.conn
    markers = {"user id": str(owner.id), "email": owner.email}
    markers.update({name: value for name, value in ids.items() if value})
    request = conn.execute(
        "select name from public.installation_requests where id = %s", [ids["request"]]
    ).fetchone()
    assert request is not None
    markers["request name"] = request["name"]
    for table, column in (
        ("activation_credentials", "encrypted_data"),
        ("integration_connections", "encrypted_payload"),
        ("vps_instances", SSH_COLUMN),
        ("vps_instances", N8N_COLUMN),
    ):
        row = conn.execute(
            f"select {column} as sealed from public.{table} t where t.id = any(%s::uuid[])",
            [[ids["credential"], ids["connection"], ids["vps"]]],
        ).fetchone()
        assert row is not None
        markers[f"{table}.{column}"] = row["sealed"]
    return markers


@pytest.fixture(scope="module")
def world(create_database: Callable[[], str]) -> Iterator[World]:
    url = create_database()
    deploy.push(url, settings_for(), include_seed=True, out=lambda _: None)
    with (
        StripeStandIn(api_key=SECRETS["STRIPE_SECRET_KEY"]) as stripe,
        HostingerStandIn(token=SECRETS["HOSTINGER_API_TOKEN"], setup_seconds=0.05) as hostinger,
        start_blocking_portal(backend="asyncio") as portal,
    ):
        settings = settings_for(
            **SECRETS, STRIPE_API_BASE=str(stripe.url), HOSTINGER_API_BASE=str(hostinger.url)
        )
        app = create_app(settings=settings, database_url=url)
        portal.call(app.runtime.database.open)
        gateway = Gateway(portal, app)
        watcher = Watcher(url)
        conn = watcher.conn
        people = {}
        for name in ("alice", "bob", "root", "carol"):
            email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
            admin = name in ("root", "carol")
            people[name] = User(local_identity.create_user(conn, email, admin=admin), email)
        world = World(
            url=url,
            settings=settings,
            gateway=gateway,
            watcher=watcher,
            stripe=stripe,
            functions={f.name: f for f in app.functions},
            openapi=gateway.request("GET", "/openapi.json").json(),
            alice=people["alice"],
            bob=people["bob"],
            root=people["root"],
            root_ths="",
            carol=people["carol"],
            carol_ths="",
            alice_ids={},
            carol_ids={},
            alice_markers={},
        )
        world.prices = {
            row["key"].removeprefix("price_"): row["value"]
            for row in conn.execute(
                "select key, value from public.system_registry"
                " where namespace = 'stripe' and key like 'price%'"
            )
        }
        world.root_ths = world.human_signature(world.root)
        world.carol_ths = world.human_signature(world.carol)
        alice_secret = f"alice-secret-{uuid.uuid4().hex}"
        world.alice_ids = seed_private_resources(world, world.alice, alice_secret)
        world.alice_ids.update(seed_subscription(world, world.alice))
        world.alice_markers = private_markers(world, world.alice, world.alice_ids)
        world.alice_markers["credential plaintext"] = alice_secret
        world.carol_ids = seed_private_resources(
            world, world.carol, f"carol-secret-{uuid.uuid4().hex}"
        )
        world.carol_ids.update(seed_subscription(world, world.carol))
        world.carol_ids["user"] = str(world.carol.id)
        world.carol_ids["agent"] = catalog_agent(conn)
        try:
            yield world
        finally:
            portal.call(gateway.client.aclose)
            portal.call(app.runtime.database.close)
            watcher.close()


# -- what every answer must look like -------------------------------------------------------


def assert_error_shape(response: httpx.Response, context: str) -> None:
    """The one error shape: PostgREST's four keys, JSON, with a request id."""
    assert response.headers.get("content-type", "").startswith("application/json"), context
    body = response.json()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, f"{context}: {body}"
    assert isinstance(body["code"], str) and isinstance(body["message"], str), context
    assert body["hint"] is None or isinstance(body["hint"], str), context


def assert_answered(world: World, before: Snapshot, response: httpx.Response, context: str) -> None:
    """No server error; errors in the one shape; exactly one log row for the request; and
    a refused request wrote nothing but that row (and its rate-limit counter)."""
    status = response.status_code
    assert status < 500, f"{context}: server error {status} {response.text[:500]}"
    request_id = response.headers.get("x-request-id")
    assert request_id, f"{context}: no x-request-id"
    if status >= 400 and response.request.method != "HEAD":  # HEAD answers carry no body
        assert_error_shape(response, context)
    rows = world.watcher.new_log_rows(before)
    mine = [row for row in rows if row["details"].get("request_id") == request_id]
    assert len(mine) == 1, f"{context}: {len(mine)} log rows for the request"
    if status >= 400:
        assert len(rows) == 1, f"{context}: a refused request left {len(rows)} log rows"
        changed = world.watcher.changed_tables(before)
        assert not changed, f"{context}: a refused request ({status}) changed {sorted(changed)}"


def assert_no_canary(
    world: World, before: Snapshot, response: httpx.Response, context: str
) -> None:
    """No canary in any log row since `before`; none of this request's in the response
    (body or headers)."""
    answer = response.text + json.dumps(dict(response.headers))
    for canary in CANARIES:
        assert canary not in answer, f"{context}: the response carries a canary: {answer[:500]}"
    for row in world.watcher.new_log_rows(before):
        for canary in LOGGED_NEVER:
            assert canary not in row["row_text"], f"{context}: a log row carries {canary}: {row}"


# -- credentials per policy -----------------------------------------------------------------


def first_policy(policy: Policy) -> Policy:
    """The policy a caller would satisfy first (`a | b` tries `a` first)."""
    return first_policy(policy.policies[0]) if isinstance(policy, AnyOf) else policy


def policy_headers(world: World, function: Function, content: bytes) -> dict[str, str]:
    """Headers that pass `function`'s policy, for a fresh caller (no shared rate limit)."""
    policy = first_policy(function.policy)
    if isinstance(policy, ThsPolicy):
        admin = world.fresh_user(admin=True)
        return {**bearer(admin), "x-ths-token": world.human_signature(admin)}
    if isinstance(policy, AdminPolicy):
        return bearer(world.fresh_user(admin=True))
    if isinstance(policy, UserPolicy):
        return bearer(world.fresh_user())
    if isinstance(policy, ServicePolicy):
        return {"apikey": SERVICE_KEY}
    if isinstance(policy, SecretPolicy):
        value = world.settings.get(policy.env)
        assert value, f"{function.name}: configure {policy.env} in SECRETS"
        return {policy.header: value} if policy.header else {"authorization": f"Bearer {value}"}
    if isinstance(policy, SignaturePolicy):
        env = WEBHOOK_SECRETS.get(function.name)
        assert env, f"{function.name} verifies signatures: add its secret to WEBHOOK_SECRETS"
        return {"stripe-signature": stripe_signature(SECRETS[env], content)}
    assert isinstance(policy, NoPolicy), f"{function.name}: unknown policy {policy}"
    return {}


# -- a. cross-tenant reads and writes through every endpoint --------------------------------

REFUSED = frozenset({403, 404})
OWN_ONLY = frozenset({200})  # the endpoint can only ever show or change the caller's own


@dataclass(frozen=True)
class Attempt:
    """One request of B's that names A's resources (B's bearer token is added)."""

    label: str
    body: Any = None
    method: str = "POST"
    query: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: frozenset[int] = REFUSED
    # Tables a successful attempt may change (only ever B's own rows there).
    may_change: frozenset[str] = frozenset()


def _portal(w: World) -> list[Attempt]:
    return [Attempt("B opens the billing portal: only ever B's own customer", {}, expect=OWN_ONLY)]


def _subscription(w: World) -> list[Attempt]:
    return [
        Attempt("B reads the billing status (GET)", method="GET", expect=OWN_ONLY),
        Attempt("B reads the billing status (POST)", {}, expect=OWN_ONLY),
    ]


def _connect(w: World) -> list[Attempt]:
    a = w.alice_ids
    return [
        Attempt(
            "check_ready of A's activation",
            {"action": "check_ready", "activationRequestId": a["request"]},
        ),
        Attempt(
            "connect, auto-activating A's activation (all rolled back)",
            {
                "action": "connect",
                "provider": "openai",
                "credentials": {"api_key": "bob-key"},
                "activationRequestId": a["request"],
            },
        ),
        Attempt(
            "revoke the provider A connected (B's own only)",
            {"action": "revoke", "provider": "openai"},
            expect=OWN_ONLY,
        ),
        Attempt("status (B's own connections only)", {"action": "status"}, expect=OWN_ONLY),
    ]


def _checkout(w: World) -> list[Attempt]:
    return [
        Attempt(
            "A's Stripe customer as the price",
            {"priceId": w.alice_ids["customer"]},
            expect=frozenset({400}),
        ),
        Attempt(
            "B's own checkout: a customer of B's, never A's",
            {"priceId": w.prices["pulse"]},
            expect=OWN_ONLY,
            may_change=frozenset({"public.client_billing"}),
        ),
    ]


def _library_checkout(w: World) -> list[Attempt]:
    return [
        Attempt(
            "A's activation request as the item",
            {"item_type": "agent", "item_id": w.alice_ids["request"]},
        )
    ]


def _provision(w: World) -> list[Attempt]:
    a = w.alice_ids
    return [
        Attempt("provision for A", {"target_user_id": str(w.alice.id)}),
        Attempt(
            "provision for A's activation",
            {"activation_request_id": a["request"]},
            expect=frozenset({400}),
        ),
        Attempt(
            "replay A's idempotency key to learn A's job", {"idempotency_key": a["idempotency_key"]}
        ),
    ]


def _jobs(w: World) -> list[Attempt]:
    a = w.alice_ids
    return [
        Attempt("list every job", {"action": "list"}),
        Attempt("show A's job", {"action": "show", "job_id": a["job"]}),
        Attempt("cancel A's job", {"action": "cancel", "job_id": a["job"]}),
        Attempt("retry A's failed job", {"action": "retry", "job_id": a["failed_job"]}),
    ]


def _service_only(w: World) -> list[Attempt]:
    return [Attempt("a user JWT at a service endpoint", {}, expect=frozenset({401, 403}))]


def _webhook(w: World) -> list[Attempt]:
    """Signature-only: B's JWT means nothing; a forged event naming A's customer is
    refused for its signature (400, as Stripe expects of a receiver)."""
    event = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": "customer.subscription.deleted",
            "data": {
                "object": {
                    "id": w.alice_ids["subscription"],
                    "object": "subscription",
                    "customer": w.alice_ids["customer"],
                    "status": "canceled",
                }
            },
        }
    ).encode()
    forged = stripe_signature("whsec_" + "f" * 32, event)
    refused = frozenset({400})
    return [
        Attempt("an unsigned event cancelling A's subscription", event, expect=refused),
        Attempt(
            "an event signed with a forged secret",
            event,
            headers={"stripe-signature": forged},
            expect=refused,
        ),
    ]


def _read_credentials(w: World) -> list[Attempt]:
    a, stolen = w.alice_ids, {"x-ths-token": w.root_ths}
    return [
        Attempt(
            "read A's credential with an admin's signature token (GET)",
            method="GET",
            query={"credentialId": a["credential"]},
            headers=stolen,
        ),
        Attempt(
            "read A's activation's credentials (POST)", {"requestId": a["request"]}, headers=stolen
        ),
    ]


def _revoke(w: World) -> list[Attempt]:
    return [Attempt("revoke A's credential", {"credentialId": w.alice_ids["credential"]})]


def _rotate(w: World) -> list[Attempt]:
    return [
        Attempt(
            "rotate every key with an admin's signature token",
            {"dry_run": False},
            headers={"x-ths-token": w.root_ths},
        ),
    ]


def _store(w: World) -> list[Attempt]:
    body = {
        "requestId": w.alice_ids["request"],
        "credentialType": "api_key",
        "serviceName": "Hijack",
        "credentials": {"api_key": "bob-overwrites"},
    }
    return [Attempt("overwrite A's credential", body)]


def _human_signature(w: World) -> list[Attempt]:
    body = {
        "mouseTrail": [],
        "keystrokes": [],
        "commandString": ths.COMMAND,
        "challengeDurationMs": 5000,
        "user_id": str(w.alice.id),
    }
    return [Attempt("a challenge naming A as its user", body, expect=frozenset({400}))]


def _server_credentials(w: World) -> list[Attempt]:
    instance = w.alice_ids["vps"]
    return [
        Attempt("view A's server credentials", {"instance_id": instance}),
        Attempt(
            "view them with an admin's signature token",
            {"instance_id": instance},
            headers={"x-ths-token": w.root_ths},
        ),
        Attempt("rotate A's server credentials", {"instance_id": instance, "action": "rotate"}),
    ]


def _server_metrics(w: World) -> list[Attempt]:
    return [Attempt("A's server metrics", {"instance_id": w.alice_ids["vps"]})]


def _orchestrator(w: World) -> list[Attempt]:
    instance = w.alice_ids["vps"]
    return [
        Attempt("list servers (B's own only)", {"action": "list"}, expect=OWN_ONLY),
        Attempt("A's server metrics", {"action": "metrics", "instance_id": instance}),
        Attempt("reboot A's server", {"action": "reboot", "instance_id": instance}),
        Attempt("scale A's server", {"action": "scale_request", "instance_id": instance}),
        Attempt(
            "decline A's scale request",
            {
                "action": "resolve_scale_request",
                "scale_request_id": w.alice_ids["scale_request"],
                "resolution": "declined",
            },
        ),
    ]


def _admins_only(body: dict[str, Any]) -> Callable[[World], list[Attempt]]:
    """A command-center endpoint: B, a user, is no admin."""
    return lambda w: [Attempt("B acts as an operator", body, expect=frozenset({403}))]


def _verify_purchase(w: World) -> list[Attempt]:
    return [Attempt("claim A's paid checkout session", {"session_id": w.alice_ids["session"]})]


def _n8n_provision(w: World) -> list[Attempt]:
    request = w.alice_ids["request"]
    return [
        Attempt(f"{action} A's automation", {"action": action, "activationRequestId": request})
        for action in ("activate", "pause", "resume", "revoke", "retrigger")
    ]


def _runtime_credentials(w: World) -> list[Attempt]:
    """A user's JWT is no node's runtime secret."""
    return [
        Attempt(
            "A's run-time credentials with B's JWT as the secret",
            method="GET",
            query={"activation_id": w.alice_ids["request"]},
            expect=frozenset({401}),
        ),
        Attempt(
            "the same by POST",
            {"activation_id": w.alice_ids["request"]},
            expect=frozenset({401}),
        ),
    ]


def _template_import(w: World) -> list[Attempt]:
    workflow = json.dumps(
        {"name": "B's", "nodes": [{"name": "W", "type": "n8n-nodes-base.webhook"}]}
    )
    return [
        Attempt("import a template", {"templates": [{"filename": "b.json", "content": workflow}]})
    ]


def _workflow_import(w: World) -> list[Attempt]:
    workflow = json.dumps(
        {"name": "B's", "nodes": [{"name": "W", "type": "n8n-nodes-base.webhook"}]}
    )
    return [
        Attempt(
            "overwrite a catalog entry",
            {
                "workflows": [
                    {
                        "filename": "b.json",
                        "content": workflow,
                        "override_slug": "lead-intake-router",
                    }
                ]
            },
        )
    ]


# Every function in `functions/` needs an entry: how B names A's resources there.
CROSS_TENANT: dict[str, Callable[[World], list[Attempt]]] = {
    "agent-heartbeat": _service_only,
    "generate-aar": _admins_only({"window_hours": 24}),
    "nexus-pulse": _admins_only({"agent_id": "AG-01"}),
    "agent-auto-heal": _admins_only({"agent_id": "AG-01"}),
    "deploy-agent-workflows": _admins_only({}),
    "billing-portal-session": _portal,
    "check-subscription": _subscription,
    "connect-integration": _connect,
    "create-checkout": _checkout,
    "create-library-checkout": _library_checkout,
    "customer-portal": _portal,
    "hostinger-credentials": _server_credentials,
    "hostinger-metrics": _server_metrics,
    "hostinger-provision": _provision,
    "library-webhook": _webhook,
    "provisioning-jobs": _jobs,
    "queue-processor": _service_only,
    "read-activation-credentials": _read_credentials,
    "revoke-activation-credentials": _revoke,
    "rotate-encryption-key": _rotate,
    "store-activation-credentials": _store,
    "stripe-portal-webhook": _webhook,
    "verify-human-signature": _human_signature,
    "verify-purchase": _verify_purchase,
    "vps-orchestrator": _orchestrator,
    # the n8n mesh
    "admin-import-workflows": _workflow_import,
    "duplicate-and-activate": _service_only,
    "import-n8n-templates": _template_import,
    "n8n-provision": _n8n_provision,
    "runtime-credentials": _runtime_credentials,
}


def test_every_function_is_served_and_has_a_cross_tenant_case(world):
    served = sorted(p.removeprefix("/functions/v1/") for p in world.openapi["paths"])
    assert served == function_names(), "/openapi.json and functions/ disagree"
    missing = sorted(set(served) - set(CROSS_TENANT))
    assert not missing, f"add a cross-tenant case to CROSS_TENANT for: {', '.join(missing)}"
    stale = sorted(set(CROSS_TENANT) - set(served))
    assert not stale, f"CROSS_TENANT names functions that do not exist: {', '.join(stale)}"


def sent_text(attempt: Attempt) -> str:
    body = attempt.body if isinstance(attempt.body, bytes) else json.dumps(attempt.body)
    return f"{body!s} {json.dumps(dict(attempt.query or {}))} {json.dumps(dict(attempt.headers))}"


def expected_refusals(function: Function) -> frozenset[int] | None:
    """What any user JWT must get from a function no user may call, by its policy."""
    policy = function.policy
    parts = policy.policies if isinstance(policy, AnyOf) else (policy,)
    if all(isinstance(p, SecretPolicy | ServicePolicy) for p in parts):
        return frozenset({401, 403})
    if all(isinstance(p, SignaturePolicy) for p in parts):
        return frozenset({400, 401, 403})  # a receiver answers a bad signature with 400
    return None


@pytest.mark.parametrize("name", function_names())
def test_no_user_reaches_another_users_resources(world, name):
    case = CROSS_TENANT.get(name)
    if case is None:
        pytest.fail(f"{name} has no cross-tenant case: add one to CROSS_TENANT")
    function = world.functions[name]
    for attempt in case(world):
        context = f"{name}: {attempt.label}"
        refusals = expected_refusals(function)
        if refusals is not None:
            assert attempt.expect <= refusals, f"{context}: {function.policy} refuses users"
        content = attempt.body if isinstance(attempt.body, bytes) else None
        before = world.watcher.snapshot()
        stripe_calls = len(world.stripe.requests)
        response = world.request(
            attempt.method,
            name,
            headers={**bearer(world.bob), **attempt.headers},
            content=content,
            json_body=None if content is not None else attempt.body,
            params=attempt.query,
        )
        assert response.status_code in attempt.expect, (
            f"{context}: {response.status_code} {response.text[:300]}"
        )
        assert_answered(world, before, response, context)
        changed = world.watcher.changed_tables(before) - attempt.may_change
        assert not changed, f"{context}: changed {sorted(changed)}"
        # Nothing of A's that B did not send: not in the answer, not in what went to Stripe.
        sent = sent_text(attempt)
        secret = {k: v for k, v in world.alice_markers.items() if v not in sent}
        to_stripe = repr(world.stripe.requests[stripe_calls:])
        for label, value in secret.items():
            assert value not in response.text, f"{context}: the answer shows A's {label}"
            assert value not in to_stripe, f"{context}: A's {label} went to Stripe"


# -- b. CORS from a foreign origin ----------------------------------------------------------

FOREIGN_ORIGINS = [
    "https://evil.example.net",
    "http://app.example.com",  # the allowed host, another scheme
    "https://app.example.com:8443",  # another port
    "https://app.example.com.evil.example.net",
    "https://evilapp.example.com",
    "null",
    f"{ALLOWED_ORIGIN}, https://evil.example.net",
    "https://evil.example.net/https://app.example.com",
]


@pytest.mark.parametrize("name", function_names())
def test_cors_answers_only_allowed_origins(world, name):
    method = world.functions[name].methods[0]
    for origin in FOREIGN_ORIGINS:
        preflight = world.request(
            "OPTIONS",
            name,
            headers={"origin": origin, "access-control-request-method": method},
        )
        assert preflight.status_code == 403, (origin, preflight.text)
        assert_error_shape(preflight, f"{name} preflight from {origin}")
        actual = world.request(method, name, headers={"origin": origin})
        for response in (preflight, actual):
            assert "access-control-allow-origin" not in response.headers, origin
            assert "access-control-allow-credentials" not in response.headers, origin
    preflight = world.request(
        "OPTIONS",
        name,
        headers={
            "origin": ALLOWED_ORIGIN,
            "access-control-request-method": method,
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert method in preflight.headers["access-control-allow-methods"]
    actual = world.request(method, name, headers={"origin": ALLOWED_ORIGIN})
    assert actual.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "origin" in actual.headers["vary"].lower()


# -- c. the PostgREST path: every SQL function `authenticated` may execute ------------------


@dataclass(frozen=True)
class SqlCall:
    """Arguments naming A's resources, for one call as B."""

    args: tuple[Any, ...]
    may_change: frozenset[str] = frozenset()  # tables a successful call may change (B's rows)


def _calls(*arg_lists: tuple[Any, ...]) -> list[SqlCall]:
    return [SqlCall(args) for args in arg_lists]


def _rotated(w: World) -> str:
    return json.dumps(
        [
            {
                "id": w.alice_ids["credential"],
                "previous_ciphertext": w.alice_markers["activation_credentials.encrypted_data"],
                "ciphertext": "v2:Zm9yZ2Vk",
                "iv": "aXY=",
                "tag": "dGFn",
                "key_version": 1,
            }
        ]
    )


# Every SQL function in `public` that `authenticated` may execute, keyed by signature: how
# B would call it through PostgREST's /rpc with A's ids.
SQL_CALLS: dict[str, Callable[[World], list[SqlCall]]] = {
    "activation_credential_slot(uuid,text)": lambda w: _calls((w.alice_ids["request"], "api_key")),
    "activation_readiness(uuid)": lambda w: _calls((w.alice_ids["request"],)),
    "begin_vps_credential_rotation(uuid)": lambda w: _calls((w.alice_ids["vps"],)),
    "begin_vps_metrics(uuid)": lambda w: _calls((w.alice_ids["vps"],)),
    "begin_vps_reboot(uuid)": lambda w: _calls((w.alice_ids["vps"],)),
    "billing_portal_target()": lambda w: _calls(()),
    "billing_status()": lambda w: _calls(()),
    "cancel_provisioning_job(uuid)": lambda w: _calls((w.alice_ids["job"],)),
    "check_rate_limit(text,integer,integer)": lambda w: _calls(("security-probe", 5, 60)),
    "connect_integration(uuid,text,text,text,text,integer,text[],text)": lambda w: _calls(
        (w.alice_ids["connection"], "openai", "v2:Zm9yZ2Vk", "iv", "tag", 1, None, None)
    ),
    "count_encrypted_values(text)": lambda w: _calls(("activation_credentials",)),
    "encrypted_values_to_rotate(text,integer,uuid,integer)": lambda w: _calls(
        ("activation_credentials", 2, None, 100), ("integration_connections", 2, None, 100)
    ),
    "enforce_rate_limit(text,integer,integer)": lambda w: _calls(("security-probe", 5, 60)),
    "entitlement_limits(uuid)": lambda w: _calls((str(w.alice.id),)),
    "has_entitlement(uuid,text,uuid)": lambda w: _calls(
        (str(w.alice.id), "agent", w.alice_ids["request"])
    ),
    "has_human_signature(text)": lambda w: _calls(("ths",)),
    "has_role(uuid,app_role)": lambda w: _calls((str(w.alice.id), "admin")),
    "integration_connection_slot(text)": lambda w: _calls(("openai",)),
    "is_admin()": lambda w: _calls(()),
    "prepare_library_checkout(text,uuid)": lambda w: _calls(
        ("agent", w.alice_ids["request"]), ("bundle", w.alice_ids["job"])
    ),
    "prepare_tier_checkout(text,text)": lambda w: _calls(
        (w.prices["pulse"], None), (w.alice_ids["customer"], None)
    ),
    "read_activation_credentials(uuid,uuid)": lambda w: _calls(
        (w.alice_ids["credential"], None), (None, w.alice_ids["request"])
    ),
    "record_key_rotation(jsonb)": lambda w: _calls(('{"rotated": 0}',)),
    "registry_get(text,text)": lambda w: _calls(("app", "domain"), ("stripe", "price_pulse")),
    "registry_set(text,text,text,text,boolean)": lambda w: _calls(
        ("app", "domain", "evil.example.net", None, False)
    ),
    "request_auto_activation(uuid)": lambda w: _calls((w.alice_ids["request"],)),
    "request_vps_scale(uuid,text)": lambda w: _calls((w.alice_ids["vps"], "more")),
    "resolve_vps_scale_request(uuid,text,text)": lambda w: _calls(
        (w.alice_ids["scale_request"], "declined", None)
    ),
    "request_vps_provisioning(text,text,uuid,text,uuid,text)": lambda w: _calls(
        ("starter", "us-east-1", None, None, str(w.alice.id), None),
        ("starter", "us-east-1", w.alice_ids["request"], None, None, None),
        ("starter", "us-east-1", None, None, None, w.alice_ids["idempotency_key"]),
    ),
    "retry_provisioning_job(uuid)": lambda w: _calls((w.alice_ids["failed_job"],)),
    "revoke_activation_credential(uuid,text)": lambda w: _calls(
        (w.alice_ids["credential"], "mine now")
    ),
    "revoke_integration(text)": lambda w: _calls(("openai",)),
    "set_operational_mode(text)": lambda w: _calls(("WAR_ROOM",), ("STEALTH",)),
    "store_activation_credential(uuid,uuid,text,text,text,text,text,integer,jsonb)": (
        lambda w: _calls(
            (
                w.alice_ids["credential"],
                w.alice_ids["request"],
                "api_key",
                "Hijack",
                "v2:Zm9yZ2Vk",
                "aXY=",
                "dGFn",
                1,
                "{}",
            )
        )
    ),
    "store_rotated_values(text,jsonb)": lambda w: _calls(("activation_credentials", _rotated(w))),
    "view_vps_credentials(uuid)": lambda w: _calls((w.alice_ids["vps"],)),
    # the command center: operators only
    "aar_telemetry(integer)": lambda w: _calls((24,)),
    "agent_states()": lambda w: _calls(()),
    "issue_log_stream_ticket(bytea)": lambda w: _calls((bytes(32),)),
    "provenance_log(bigint,bigint,integer,text,text,text,timestamp with time zone)": (
        lambda w: _calls(
            (None, None, 100, None, None, None, None), (None, 0, 100, "error", None, None, None)
        )
    ),
    "provenance_summary()": lambda w: _calls(()),
    "record_manual_pulse(text,text,jsonb)": lambda w: _calls(("AG-01", "NOMINAL", "{}")),
    "system_status()": lambda w: _calls(()),
    # the n8n mesh: admins import templates and catalog entries (B is refused)
    "import_n8n_template(jsonb,text,text,text,text,uuid)": lambda w: _calls(
        ('{"nodes": [{"type": "n8n-nodes-base.webhook"}]}', "b.json", "B", None, None, None)
    ),
    "import_automation_workflow(jsonb,text,text)": lambda w: _calls(
        ('{"nodes": [{"type": "n8n-nodes-base.webhook"}]}', "b.json", "lead-intake-router")
    ),
}

# SQL functions `anon` may execute, each on purpose (none today: everything anonymous goes
# through an edge function).
ANON_EXECUTABLE: dict[str, str] = {}

# Refusals PostgREST turns into 4xx: privilege, its own PTnnn statuses, invalid input
# (class 22), not found, integrity (class 23).
REFUSAL_STATES = ("42501", "PT4", "22", "23", "P0002")


def executable_functions(conn: psycopg.Connection[Any], role: str) -> dict[str, list[str]]:
    """Signature -> argument types of every function in `public` that `role` may execute."""
    rows = conn.execute(
        "select p.oid::regprocedure::text as signature,"
        " array(select format_type(t, null) from unnest(p.proargtypes) t) as types"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'public' and has_function_privilege(%s, p.oid, 'execute')"
        " order by 1",
        [role],
    ).fetchall()
    return {row["signature"]: row["types"] for row in rows}


def call_as(
    conn: psycopg.Connection[Any],
    role: str,
    user_id: uuid.UUID | None,
    signature: str,
    types: Sequence[str],
    args: Sequence[Any],
) -> list[dict[str, Any]]:
    """What PostgREST runs for `POST /rpc/<function>`: one transaction that sets the role,
    the JWT claims and the request headers locally, calls, and commits on success."""
    claims: dict[str, Any] = {"role": role}
    if user_id is not None:
        claims["sub"] = str(user_id)
    name = signature.split("(", 1)[0]
    placeholders = ", ".join(f"%s::{kind}" for kind in types)
    with conn.transaction():
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
            " set_config('request.headers', '{}', true)",
            [role, json.dumps(claims)],
        )
        cursor = conn.execute(f"select * from public.{name}({placeholders})", list(args))
        return cursor.fetchall() if cursor.description else []


def test_every_authenticated_sql_function_has_a_case(world):
    granted = executable_functions(world.watcher.conn, "authenticated")
    missing = sorted(set(granted) - set(SQL_CALLS))
    assert not missing, f"add a cross-tenant call to SQL_CALLS for: {', '.join(missing)}"
    stale = sorted(set(SQL_CALLS) - set(granted))
    assert not stale, f"SQL_CALLS names functions authenticated cannot execute: {stale}"


def test_only_intended_sql_functions_are_anonymous(world):
    granted = executable_functions(world.watcher.conn, "anon")
    assert sorted(granted) == sorted(ANON_EXECUTABLE), (
        "list every function anon may execute, with why, in ANON_EXECUTABLE"
    )


@pytest.mark.parametrize("signature", sorted(SQL_CALLS))
def test_rpc_as_another_user_reveals_and_changes_nothing(world, signature):
    conn = world.watcher.conn
    types = executable_functions(conn, "authenticated").get(signature)
    if types is None:
        pytest.fail(f"{signature} is not executable by authenticated: update SQL_CALLS")
    for call in SQL_CALLS[signature](world):
        context = f"{signature}{call.args}"
        before = world.watcher.snapshot()
        try:
            rows = call_as(conn, "authenticated", world.bob.id, signature, types, call.args)
        except psycopg.Error as error:
            state = error.sqlstate or "(none)"
            assert state.startswith(REFUSAL_STATES), f"{context}: {state} {error}"
            assert status_for_sqlstate(state, authenticated=True) < 500, context
            diag = error.diag
            shown = f"{diag.message_primary} {diag.message_detail} {diag.message_hint}"
        else:
            shown = repr(rows)
        sent = repr(call.args)
        for label, value in world.alice_markers.items():
            if value not in sent:
                assert value not in shown, f"{context} shows A's {label}: {shown[:300]}"
        changed = world.watcher.changed_tables(before) - call.may_change
        assert not changed, f"{context} changed {sorted(changed)}"


@pytest.mark.parametrize("signature", sorted(SQL_CALLS))
def test_rpc_refuses_anon(world, signature):
    if signature in ANON_EXECUTABLE:
        pytest.skip(f"meant for anon: {ANON_EXECUTABLE[signature]}")
    conn = world.watcher.conn
    types = executable_functions(conn, "authenticated").get(signature)
    if types is None:
        pytest.fail(f"{signature} is not executable by authenticated: update SQL_CALLS")
    for call in SQL_CALLS[signature](world):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            call_as(conn, "anon", None, signature, types, call.args)


# -- the bodies, queries and headers both fuzzing and canaries send -------------------------


def operations(openapi: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(function, method, operation) for every operation in the document."""
    return [
        (path.removeprefix("/functions/v1/"), method.upper(), operation)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
    ]


def resolve(openapi: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def body_schema(openapi: Mapping[str, Any], operation: Mapping[str, Any]) -> Mapping[str, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return resolve(openapi, schema) if schema else {}


def is_free_text(schema: Mapping[str, Any]) -> bool:
    """A string field with no format, pattern or enum: anything may go in."""
    return schema.get("type") == "string" and not {"format", "pattern", "enum"} & set(schema)


def canary_fits(schema: Mapping[str, Any]) -> bool:
    longest = max(len(c) for c in LOGGED_NEVER)
    return is_free_text(schema) and schema.get("maxLength", longest) >= longest


# Values that take a request past the first check (a plan that exists, the exact command).
KNOWN_VALUES: dict[str, Callable[[World], Any]] = {
    "plan": lambda w: "starter",
    "region": lambda w: "us-east-1",
    "priceId": lambda w: w.prices["ghost"],  # one-time: the deep caller has a subscription
    "session_id": lambda w: w.carol_ids["session"],
    "mode": lambda w: "payment",
    "commandString": lambda w: ths.COMMAND,
    "challengeDurationMs": lambda w: 5000,
    "dry_run": lambda w: True,
}
# uuid fields that name a resource, and which of the caller's resources to name.
KNOWN_IDS = {
    "requestId": "request",
    "activationRequestId": "request",
    "activation_request_id": "request",
    "credentialId": "credential",
    "job_id": "job",
    "instance_id": "vps",
    "target_user_id": "user",
    "item_id": "agent",
    "scale_request_id": "scale_request",
}


class Values:
    """Values for a function's JSON schema: `sample()` one deterministic valid value with
    the canaries in every free-text field, `strategy()` for Hypothesis."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.openapi = world.openapi

    def canaries(self, field_name: str) -> tuple[str, ...]:
        """The canaries for a field of this function's body."""
        if (self.name, field_name) in LOGGED_FIELDS:
            return (LOGGED_CANARY,)
        return (STORED_CANARY,) if (self.name, field_name) in STORED_FIELDS else CANARIES

    # deterministic --------------------------------------------------------------------

    def sample(self, schema: Mapping[str, Any], field_name: str = "") -> Any:
        schema = resolve(self.openapi, schema)
        if field_name in KNOWN_VALUES:
            return KNOWN_VALUES[field_name](self.world)
        if "anyOf" in schema:
            options = [resolve(self.openapi, s) for s in schema["anyOf"]]
            chosen = next((s for s in options if s.get("type") != "null"), options[0])
            return self.sample(chosen, field_name)
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "string":
            if schema.get("format") == "uuid":
                return self.world.carol_ids.get(KNOWN_IDS.get(field_name, ""), str(uuid.uuid4()))
            if "pattern" in schema:
                return find(st.from_regex(schema["pattern"], fullmatch=True), lambda _: True)
            if canary_fits(schema):
                canaries = self.canaries(field_name)
                return canaries[-1] if "pass" in field_name.lower() else canaries[0]
            return "x" * max(schema.get("minLength", 1), 1)
        if kind == "integer":
            return schema.get("minimum", 1)
        if kind == "number":
            return 1.5
        if kind == "boolean":
            return False
        if kind == "array":
            return [self.sample(schema.get("items", {}), field_name)]
        if kind == "object":
            properties = schema.get("properties", {})
            if properties:
                return {key: self.sample(value, key) for key, value in properties.items()}
            # maps (credentials, metadata): canaries as values
            canaries = self.canaries(field_name)
            return {"api_key": canaries[0], "password": canaries[-1]}
        return None

    # for Hypothesis ---------------------------------------------------------------------

    def strategy(self, schema: Mapping[str, Any], field_name: str = "") -> st.SearchStrategy[Any]:
        generated = self._generated(schema, field_name)
        if field_name in KNOWN_VALUES:  # now and then, a value that gets past the first check
            return st.just(KNOWN_VALUES[field_name](self.world)) | generated
        return generated

    def _generated(self, schema: Mapping[str, Any], field_name: str) -> st.SearchStrategy[Any]:
        schema = resolve(self.openapi, schema)
        if "anyOf" in schema:
            return st.one_of([self._generated(s, field_name) for s in schema["anyOf"]])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "string":
            return self._strings(schema, field_name)
        if kind == "integer":
            return st.integers(schema.get("minimum"), schema.get("maximum"))
        if kind == "number":
            return st.floats(allow_nan=False, allow_infinity=False) | st.integers()
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            items = self.strategy(schema.get("items", {}), field_name)
            return st.lists(items, max_size=min(schema.get("maxItems", 4), 4))
        if kind == "object":
            return self._objects(schema, field_name)
        return JSON_VALUES

    def ids(self) -> st.SearchStrategy[str]:
        """Resource ids of A's and the deep caller's, or any uuid."""
        known = [*self.world.carol_ids.values(), *self.world.alice_ids.values()]
        return st.sampled_from(known) | st.uuids().map(str)

    def _strings(self, schema: Mapping[str, Any], field_name: str) -> st.SearchStrategy[str]:
        if schema.get("format") == "uuid":
            return self.ids()
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        low, high = schema.get("minLength", 0), schema.get("maxLength", 200)
        text = st.text(min_size=low, max_size=min(high, 60))
        if canary_fits(schema):
            return text | st.sampled_from(self.canaries(field_name))
        return text

    def _objects(
        self, schema: Mapping[str, Any], field_name: str
    ) -> st.SearchStrategy[dict[str, Any]]:
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            return st.fixed_dictionaries(
                {k: self.strategy(v, k) for k, v in properties.items() if k in required},
                optional={
                    k: self.strategy(v, k) for k, v in properties.items() if k not in required
                },
            )
        canaries = st.sampled_from(self.canaries(field_name))
        values: st.SearchStrategy[Any] = st.text(max_size=40) | canaries
        keys: st.SearchStrategy[str] = st.text(max_size=20)
        if schema.get("patternProperties"):
            pattern, value_schema = next(iter(schema["patternProperties"].items()))
            keys = st.from_regex(pattern, fullmatch=True)
            values = self.strategy(value_schema) | canaries
        elif isinstance(schema.get("additionalProperties"), dict):
            values = self.strategy(schema["additionalProperties"]) | canaries
        return st.dictionaries(
            keys,
            values,
            min_size=schema.get("minProperties", 0),
            max_size=min(schema.get("maxProperties", 3), 3),
        )


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


# -- d. property-based fuzzing of every operation in /openapi.json --------------------------


class FuzzRequest:
    """One generated request (a plain class: Hypothesis prints a failing example with its
    short `repr`, not field by field with a megabyte body)."""

    def __init__(
        self,
        method: str,
        content: bytes,
        content_type: str | None,
        query: dict[str, str],
        headers: dict[str, str],
    ) -> None:
        self.method = method
        self.content = content
        self.content_type = content_type
        self.query = query
        self.headers = headers

    def __repr__(self) -> str:
        return f"FuzzRequest({self.describe()})"

    def describe(self) -> str:
        more = "…" if len(self.content) > 300 else ""
        return (
            f"{self.method} query={self.query} content-type={self.content_type!r}"
            f" body={self.content[:300]!r}{more} ({len(self.content)} bytes)"
        )


WRONG_TYPES = [0, -1, 2**63, 1e308, 1.5, True, None, [], {}, "text", [[[]]], {"$ne": None}]
EXTRA_FIELDS = [
    {"password": PASSWORD_CANARY},
    {"user_id": "00000000-0000-0000-0000-000000000000"},
    {"role": "service_role"},
    {"__proto__": {"admin": True}},
]
RAW_BODIES = [
    b"",
    b"null",
    b"[]",
    b"1",
    b'"text"',
    b"{",
    b'{"a": 1, "a": 2}',
    b"\xff\xfe{\x00}",
    b'{"s": "\xc3\x28"}',
    b"NaN",
    b'{"n": Infinity}',
    b'{"s": "\\ud800"}',
    b'{"s": "a\\u0000b"}',
    b"<?xml version='1.0'?><a/>",
    b"a=1&b=2",
    PASSWORD_CANARY.encode(),
    b"[" * 60_000 + b"]" * 60_000,
    b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
]
CONTENT_TYPES = [
    "application/json",
    "application/json",  # most bodies should be read as JSON
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/vnd.api+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]
HOSTILE_METHODS = ["GET", "PUT", "PATCH", "DELETE", "HEAD"]


@st.composite
def hostile_body(draw: st.DrawFn, values: Values, schema: Mapping[str, Any]) -> bytes:
    """A body: valid for the schema, valid then broken in one place, or raw junk."""
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "raw"]))
    if kind == "raw" or not schema:
        return draw(st.sampled_from(RAW_BODIES))
    body = draw(values.strategy(schema))
    if kind == "mutated" and isinstance(body, dict):
        mutation = draw(
            st.sampled_from(["wrong type", "huge", "bad enum", "extra", "drop", "deep", "nul"])
        )
        keys = sorted(schema.get("properties", {}))
        key = draw(st.sampled_from(keys)) if keys else "field"
        if mutation == "wrong type":
            body[key] = draw(st.sampled_from(WRONG_TYPES))
        elif mutation == "huge":
            body[key] = "A" * draw(st.sampled_from([5_000, 70_000, 1_100_000]))
        elif mutation == "bad enum":
            body[key] = "NOT_A_KNOWN_VALUE"
        elif mutation == "extra":
            body.update(draw(st.sampled_from(EXTRA_FIELDS)))
        elif mutation == "drop":
            body.pop(key, None)
        elif mutation == "deep":
            depth = draw(st.sampled_from([100, 5_000]))
            body[key] = functools.reduce(lambda inner, _: [inner], range(depth), [])
        else:
            body[key] = f"a\x00b{PASSWORD_CANARY}"
    try:
        return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    except RecursionError:
        return b'{"deep": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"


@st.composite
def fuzz_requests(
    draw: st.DrawFn, values: Values, method: str, operation: Mapping[str, Any]
) -> FuzzRequest:
    schema = body_schema(values.openapi, operation)
    content = draw(hostile_body(values, schema)) if method != "GET" else b""
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(HOSTILE_METHODS))  # a method the function lacks
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        if draw(st.booleans()):
            name = parameter["name"]
            query[name] = draw(values.ids() | st.text(max_size=40))
    if draw(st.booleans()):
        query.update({"token": KEY_CANARY, "password": PASSWORD_CANARY})
    return FuzzRequest(
        method=method,
        content=content,
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
        query=query,
        headers=dict(CANARY_HEADERS),
    )


def request_headers(
    world: World, name: str, request: FuzzRequest, credentials: str
) -> dict[str, str]:
    """The request's headers with the credentials of `credentials` (a fresh caller each
    time: no rate limit carries over between examples)."""
    headers = dict(request.headers)
    if request.content_type is not None:
        headers["content-type"] = request.content_type
    if credentials == "user":
        headers.update(bearer(world.fresh_user()))
    elif credentials == "policy":
        headers.update(policy_headers(world, world.functions[name], request.content))
    return headers


def credential_kinds(function: Function) -> list[str]:
    """No credentials, a user's JWT, and what the policy asks for (when that differs)."""
    kinds = ["none", "user"]
    if type(first_policy(function.policy)) is not UserPolicy:
        kinds.append("policy")
    return kinds


def declared_operations() -> list[tuple[str, str]]:
    """(function, method) of every operation, from the functions' declarations: the test
    then takes each one's description from the app's /openapi.json."""
    from aerelion.functions import load_functions

    return [(f.name, m) for f in load_functions(FUNCTIONS_DIR) for m in f.methods]


@pytest.mark.parametrize(("name", "method"), declared_operations())
def test_fuzzing_never_breaks_the_rules(world, name, method):
    operation = world.openapi["paths"].get(f"/functions/v1/{name}", {}).get(method.lower())
    assert operation is not None, f"{method} {name} is missing from /openapi.json"
    values = Values(world, name)
    kinds = credential_kinds(world.functions[name])

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,  # nothing written to the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=fuzz_requests(values, method, operation))
    def check(request: FuzzRequest) -> None:
        for credentials in kinds:
            headers = request_headers(world, name, request, credentials)  # may add a user
            before = world.watcher.snapshot()
            response = world.request(
                request.method,
                name,
                headers=headers,
                content=request.content,
                params=request.query,
            )
            context = f"{name} as {credentials}: {request.describe()}"
            assert_answered(world, before, response, context)
            assert_no_canary(world, before, response, context)

    check()


def regression_bodies(values: Values, schema: Mapping[str, Any]) -> Iterator[tuple[str, bytes]]:
    """Bodies the fuzzing once turned into 500s, sent to every operation every time."""
    yield "nested 60 000 deep", b"[" * 60_000 + b"]" * 60_000
    yield "nested 20 000 deep in a field", b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    body = values.sample(schema) if schema else {}
    for key, value in body.items():
        if isinstance(value, str):
            yield f"NUL in {key}", json.dumps({**body, key: f"a\x00{value}"}).encode()
    yield "NUL in a key", json.dumps({**body, "a\x00b": 1}).encode()
    yield "a lone surrogate", b'{"text": "\\ud800"}'


@pytest.mark.parametrize(("name", "method"), declared_operations())
def test_hostile_bodies_the_fuzzing_found_stay_refused(world, name, method):
    """Deep nesting made json.loads raise RecursionError (500, in parse_body and in the
    webhook receiver); U+0000 in a string made psycopg refuse the parameter (500 XX000)."""
    operation = world.openapi["paths"][f"/functions/v1/{name}"][method.lower()]
    values = Values(world, name)
    for label, content in regression_bodies(values, body_schema(world.openapi, operation)):
        request = FuzzRequest(method, content, "application/json", {"q": "a\x00b"}, {})
        headers = request_headers(world, name, request, "policy")
        before = world.watcher.snapshot()
        response = world.request(
            method, name, headers=headers, content=content, params=request.query
        )
        assert_answered(world, before, response, f"{method} {name} with {label}")


# -- e. canaries in every request path ------------------------------------------------------


def canary_event(world: World) -> dict[str, Any]:
    """A Stripe event with the canaries in its metadata, as a webhook receiver gets them."""
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": f"cs_test_{uuid.uuid4().hex}",
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "paid",
                "client_reference_id": str(world.carol.id),
                "customer": world.carol_ids["customer"],
                "amount_total": 4900,
                "metadata": {"note": KEY_CANARY, "password": PASSWORD_CANARY},
            }
        },
    }


def canary_requests(world: World, name: str, method: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, request) pairs with the canaries in body, query and headers, going as deep
    as valid credentials and the caller's own ids take them."""
    function = world.functions[name]
    operation = world.openapi["paths"][f"/functions/v1/{name}"][method.lower()]
    schema = body_schema(world.openapi, operation)
    values = Values(world, name)
    body = values.sample(schema) if schema else {"password": PASSWORD_CANARY}
    if isinstance(first_policy(function.policy), SignaturePolicy):
        body = canary_event(world)
    content = json.dumps(body).encode()
    # query parameters are text; those naming a resource name the deep caller's
    query = {
        p["name"]: world.carol_ids.get(KNOWN_IDS.get(p["name"], ""), KEY_CANARY)
        for p in operation.get("parameters", [])
    }
    json_type = {"content-type": "application/json"}
    if type(first_policy(function.policy)) is UserPolicy:
        # carol owns the ids in the body (an admin, with a signature: as deep as it goes)
        as_policy = {**bearer(world.carol), "x-ths-token": world.carol_ths}
    else:
        as_policy = policy_headers(world, function, content)
    forged = {
        "authorization": f"Bearer {KEY_CANARY}",
        "apikey": KEY_CANARY,
        "x-ths-token": PASSWORD_CANARY,
        "stripe-signature": f"t=1,v1={PASSWORD_CANARY}",
    }
    yield (
        "canary credentials",
        {
            "headers": {**CANARY_HEADERS, **forged, **json_type},
            "content": content,
            "params": {**query, "token": KEY_CANARY},
        },
    )
    yield (
        "valid credentials",
        {
            "headers": {**CANARY_HEADERS, **as_policy, **json_type},
            "content": content,
            "params": query,
        },
    )
    if isinstance(body, dict):
        with_password = json.dumps({**body, "password": PASSWORD_CANARY}).encode()
        yield (
            "a password field",
            {
                "headers": {
                    **CANARY_HEADERS,
                    **policy_headers(world, function, with_password),
                    **json_type,
                },
                "content": with_password,
                "params": {**query, "password": PASSWORD_CANARY},
            },
        )
    for label, raw, kind in (
        ("a text body", f"password={PASSWORD_CANARY}".encode(), "text/plain"),
        ("malformed JSON", f'{{"password": "{PASSWORD_CANARY}"'.encode(), "application/json"),
        ("invalid UTF-8", b'{"password": "\xff' + KEY_CANARY.encode() + b'"}', "application/json"),
    ):
        yield (
            label,
            {
                "headers": {
                    **CANARY_HEADERS,
                    **policy_headers(world, function, raw),
                    "content-type": kind,
                },
                "content": raw,
                "params": {"password": PASSWORD_CANARY},
            },
        )


@pytest.mark.parametrize(("name", "method"), declared_operations())
def test_canaries_never_reach_a_log_row_or_an_answer(world, name, method):
    for label, request in canary_requests(world, name, method):
        context = f"{method} {name} with {label}"
        before = world.watcher.snapshot()
        response = world.request(method, name, **request)
        assert response.status_code < 500, f"{context}: {response.status_code} {response.text}"
        assert_no_canary(world, before, response, context)
    before = world.watcher.snapshot()
    subpath = world.gateway.request(method, f"/functions/v1/{name}/{PASSWORD_CANARY}")
    assert subpath.status_code < 500, subpath.text
    assert_no_canary(world, before, subpath, f"{method} {name} with a canary in its path")


def test_no_log_row_ever_held_a_canary(world):
    """Last: a sweep of the whole log after every request of the module."""
    for canary in LOGGED_NEVER:
        found = world.watcher.conn.execute(
            f"select count(*) as n from {LOG_TABLE} l where strpos(l::text, %s) > 0", [canary]
        ).fetchone()
        assert found == {"n": 0}, f"{found} log rows hold {canary}"
