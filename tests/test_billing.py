"""Billing end to end: checkout through (a stand-in of) Stripe, webhooks that cannot be
forged, lost or replayed, purchases and subscriptions, and access that follows payment."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import stripe
from psycopg.rows import dict_row

from aerelion import deploy, local_identity
from aerelion.app import App, create_app
from aerelion.standins.stripe import StripeStandIn
from aerelion.stripe_client import API_VERSION
from aerelion.stripe_config import STRIPE_TIERS
from stripe_events import (
    LIBRARY_SECRET,
    PATHS,
    PORTAL_SECRET,
    body,
    deliver,
    endpoints_for,
    event,
    new_id,
    signature,
)
from support import REPO, RUNTIME_SECRETS, act_as, settings_for

pytestmark = pytest.mark.anyio

KEY = "sk_test_" + "k" * 32
CRON = RUNTIME_SECRETS["TEST_CRON_SECRET"]
TIERS = {tier.key: tier for tier in STRIPE_TIERS}
DOMAIN = "https://app.aerelion.systems"


def billing_settings(stripe_url: str | None, **extra: str) -> Any:
    environ = {
        **RUNTIME_SECRETS,
        "CRON_SECRET": CRON,
        "STRIPE_SECRET_KEY": KEY,
        "STRIPE_LIBRARY_WEBHOOK_SECRET": LIBRARY_SECRET,
        "STRIPE_PORTAL_WEBHOOK_SECRET": PORTAL_SECRET,
        **extra,
    }
    if stripe_url:
        environ["STRIPE_API_BASE"] = stripe_url
    return settings_for(**environ)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StripeStandIn]:
    with StripeStandIn(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_stand_in(stand_in: StripeStandIn) -> None:
    stand_in.reset()


@pytest.fixture(scope="module")
def db(database) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


async def open_app(database: str, stripe_url: str | None) -> App:
    app = create_app(settings=billing_settings(stripe_url), database_url=database)
    await app.runtime.database.open()
    return app


@pytest.fixture
async def client(database, stand_in) -> AsyncIterator[httpx.AsyncClient]:
    app = await open_app(database, stand_in.url)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
    finally:
        await app.runtime.database.close()


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    email: str

    def headers(self, **extra: str) -> dict[str, str]:
        claims = local_identity.user_claims(self.id, self.email)
        token = local_identity.sign(claims, RUNTIME_SECRETS["SUPABASE_JWT_SECRET"])
        return {"authorization": f"Bearer {token}", **extra}


def person(db, *, admin: bool = False) -> Person:
    email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
    return Person(local_identity.create_user(db, email, admin=admin), email)


@pytest.fixture(scope="module")
def catalog(db) -> dict[str, uuid.UUID]:
    def agent(slug: str, status: str = "published", price: int = 4900) -> uuid.UUID:
        return db.execute(
            "insert into public.automation_agents (slug, name, status, price_cents,"
            " short_outcome) values (%s, %s, %s, %s, 'Leads routed') returning id",
            [f"{slug}-{uuid.uuid4().hex[:6]}", slug.title(), status, price],
        ).fetchone()["id"]

    items = {name: agent(name) for name in ("a1", "a2", "a3", "a4")}
    items["draft"] = agent("draft", status="draft")
    items["free"] = agent("free", price=0)
    items["bundle"] = db.execute(
        "insert into public.automation_bundles (slug, name, status, bundle_price_cents,"
        " included_agent_ids) values (%s, 'Bundle', 'published', 14900, %s) returning id",
        [f"bundle-{uuid.uuid4().hex[:6]}", [items["a2"]]],
    ).fetchone()["id"]
    return items


def one(db, query: str, *params: Any) -> Any:
    row = db.execute(query, list(params)).fetchone()
    return None if row is None else next(iter(row.values()))


def count(db, table: str, where: str = "true", *params: Any) -> int:
    return one(db, f"select count(*) from public.{table} where {where}", *params)


def billing(db, user: Person) -> dict[str, Any] | None:
    return db.execute(
        "select * from public.client_billing where user_id = %s", [user.id]
    ).fetchone()


def tier_of(db, user: Person) -> str | None:
    with db.transaction():
        act_as(db, "service_role")
        return one(db, "select public.current_tier(%s)", user.id)


def activate(db, user: Person, agent: uuid.UUID, status: str = "active") -> uuid.UUID:
    """A live activation (an n8n mapping) of `agent` for `user`, on its open installation
    request (the one its purchase made, or a new one)."""
    request = one(
        db,
        "select id from public.installation_requests where user_id = %s and automation_id = %s"
        " and status not in ('completed', 'cancelled')",
        user.id,
        agent,
    ) or one(
        db,
        "insert into public.installation_requests (name, email, user_id, automation_id)"
        " values ('Client', %s, %s, %s) returning id",
        user.email,
        user.id,
        agent,
    )
    return one(
        db,
        "insert into public.n8n_mappings (user_id, activation_request_id, automation_id, status)"
        " values (%s, %s, %s, %s) returning id",
        user.id,
        request,
        agent,
        status,
    )


def mappings(db, user: Person) -> list[dict[str, Any]]:
    return db.execute(
        "select id, status, metadata from public.n8n_mappings where user_id = %s"
        " order by created_at, id",
        [user.id],
    ).fetchall()


def jobs(db, user: Person, action: str) -> int:
    return count(db, "provisioning_queue", "user_id = %s and action = %s", user.id, action)


async def post(client, path: str, user: Person, body: dict | None = None, **headers: str):
    return await client.post(
        f"/functions/v1/{path}", json=body or {}, headers=user.headers(**headers)
    )


async def send(client, name: str, endpoint: str, **values: Any) -> tuple[dict, httpx.Response]:
    evt = event(name, **values)
    response = await deliver(client, evt, endpoint)
    assert response.status_code == 200, response.text
    return evt, response


@dataclass
class Subscription:
    customer_id: str
    subscription_id: str
    tier: str


async def subscribe(
    client, user: Person, tier: str = "operator", at: int | None = None, **ids: str
) -> Subscription:
    """What Stripe sends when a client subscribes (at `at`, default now): the checkout, the
    subscription, its first invoice paid."""
    sub = Subscription(
        ids.get("customer_id", new_id("cus")), ids.get("subscription_id", new_id("sub")), tier
    )
    common: dict[str, Any] = {
        "user_id": str(user.id),
        "customer_id": sub.customer_id,
        "subscription_id": sub.subscription_id,
        "tier": tier,
    }
    if at is not None:
        common.update(created=at, started=at, period_start=at)
    evt = event("checkout.session.completed.subscription", **common)
    for endpoint in ("library", "portal"):
        assert (await deliver(client, evt, endpoint)).status_code == 200
    await send(client, "customer.subscription.created", "portal", **common)
    await send(client, "invoice.paid", "portal", **common)
    return sub


async def buy_ghost(client, user: Person, **values: Any) -> dict[str, Any]:
    evt = event(
        "checkout.session.completed.payment", user_id=str(user.id), amount=2_500_000, **values
    )
    evt["data"]["object"]["metadata"] = {
        "purpose": "tier",
        "tier": "ghost",
        "user_id": str(user.id),
    }
    response = await deliver(client, evt, "library")
    assert response.status_code == 200, response.text
    return evt["data"]["object"]


# -- configuration ---------------------------------------------------------------------


def test_the_pinned_api_version_is_the_one_the_library_is_generated_for():
    from stripe._api_version import _ApiVersion

    assert API_VERSION == _ApiVersion.CURRENT
    assert '"stripe==16.1.0"' in (REPO / "pyproject.toml").read_text()
    assert "stripe==16.1.0" in (REPO / "constraints.txt").read_text().splitlines()


def test_webhook_secrets_must_be_stripe_secrets_and_differ():
    same = billing_settings(None, STRIPE_PORTAL_WEBHOOK_SECRET=LIBRARY_SECRET)
    assert any("must differ" in problem for problem in same.serving_problems())
    wrong = billing_settings(None, STRIPE_LIBRARY_WEBHOOK_SECRET="plain-secret")
    assert any("whsec_" in problem for problem in wrong.serving_problems())
    assert billing_settings("http://127.0.0.1:9").serving_problems() == []


# -- checkout ----------------------------------------------------------------------------


async def test_a_tier_checkout_uses_the_registry_price_and_domain(client, db, stand_in):
    buyer = person(db)
    response = await post(
        client,
        "create-checkout",
        buyer,
        {"priceId": TIERS["operator"].price_id, "mode": "subscription"},
        origin="https://evil.example.com",
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["url"].startswith(stand_in.url) and answer["session_id"].startswith("cs_")

    session = stand_in.sessions[answer["session_id"]]
    customer = stand_in.customers[session["customer"]]
    assert customer["metadata"]["user_id"] == str(buyer.id)
    assert customer["email"] == buyer.email
    assert session["mode"] == "subscription"
    assert session["client_reference_id"] == str(buyer.id)
    assert session["metadata"] == {"purpose": "tier", "tier": "operator", "user_id": str(buyer.id)}
    assert session["_subscription_metadata"] == session["metadata"]
    assert session["success_url"].startswith(f"{DOMAIN}/portal/dashboard?checkout=success")
    assert "{CHECKOUT_SESSION_ID}" in session["success_url"]
    assert session["cancel_url"] == f"{DOMAIN}/?checkout=cancelled"
    assert billing(db, buyer)["stripe_customer_id"] == customer["id"]
    versions = {version for _, _, _, version in stand_in.requests}
    assert versions == {API_VERSION}

    # The stored customer is used again: no search, no second customer.
    again = await post(client, "create-checkout", buyer, {"priceId": TIERS["pulse"].price_id})
    assert again.status_code == 200, again.text
    assert len(stand_in.customers) == 1
    assert [path for method, path, *_ in stand_in.requests if "customers" in path] == [
        "/v1/customers/search",
        "/v1/customers",
    ]


async def test_the_one_time_tier_checks_out_in_payment_mode(client, db, stand_in):
    buyer = person(db)
    response = await post(client, "create-checkout", buyer, {"priceId": TIERS["ghost"].price_id})
    assert response.status_code == 200, response.text
    session = stand_in.sessions[response.json()["session_id"]]
    assert session["mode"] == "payment" and session["amount_total"] == 2_500_000
    assert session["metadata"]["tier"] == "ghost"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"priceId": "price_1UnknownPriceId"}, 400, "22023"),
        ({"priceId": TIERS["pulse"].product_id}, 400, "22023"),
        ({"priceId": TIERS["pulse"].price_id, "mode": "payment"}, 400, "22023"),
        ({"priceId": ""}, 400, "invalid_request"),
        ({"price_id": TIERS["pulse"].price_id}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
    ],
)
async def test_checkout_refuses_unknown_price_ids(client, db, stand_in, body, status, code):
    buyer = person(db)
    response = await post(client, "create-checkout", buyer, body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert stand_in.requests == []
    assert billing(db, buyer) is None


async def test_checkout_needs_a_signed_in_user(client):
    response = await client.post(
        "/functions/v1/create-checkout", json={"priceId": TIERS["pulse"].price_id}
    )
    assert response.status_code == 401


async def test_a_customer_is_found_by_our_user_id_never_by_email(client, db, stand_in):
    buyer = person(db)
    # A customer with the buyer's email but not our id, and one carrying our id.
    stand_in.customers["cus_test_email_only"] = {
        "id": "cus_test_email_only",
        "object": "customer",
        "email": buyer.email,
        "metadata": {},
    }
    stand_in.customers["cus_test_ours"] = {
        "id": "cus_test_ours",
        "object": "customer",
        "email": "other@example.com",
        "metadata": {"user_id": str(buyer.id)},
    }
    response = await post(client, "create-checkout", buyer, {"priceId": TIERS["pulse"].price_id})
    assert response.status_code == 200, response.text
    assert stand_in.sessions[response.json()["session_id"]]["customer"] == "cus_test_ours"
    assert billing(db, buyer)["stripe_customer_id"] == "cus_test_ours"


async def test_stripe_rate_limits_and_errors_are_retried_within_bounds(client, db, stand_in):
    buyer = person(db)
    stand_in.fail_next("checkout.sessions.create", 429)
    stand_in.fail_next("customers.search", 500)
    response = await post(client, "create-checkout", buyer, {"priceId": TIERS["pulse"].price_id})
    assert response.status_code == 200, response.text
    creates = [r for r in stand_in.requests if r[1] == "/v1/checkout/sessions"]
    assert len(creates) == 2  # the retry, with the same idempotency key

    stand_in.fail_next("checkout.sessions.create", 503, times=10)
    failed = await post(client, "create-checkout", buyer, {"priceId": TIERS["pulse"].price_id})
    assert (failed.status_code, failed.json()["code"]) == (502, "payment_provider_error")
    assert len([r for r in stand_in.requests if r[1] == "/v1/checkout/sessions"]) == 2 + 3


async def test_a_second_subscription_or_ghost_is_refused(client, db):
    subscriber, ghost = person(db), person(db)
    await subscribe(client, subscriber, "pulse")
    refused = await post(
        client, "create-checkout", subscriber, {"priceId": TIERS["operator"].price_id}
    )
    assert (refused.status_code, refused.json()["hint"]) == (
        409,
        "change plans in the billing portal",
    )
    await buy_ghost(client, ghost)
    again = await post(client, "create-checkout", ghost, {"priceId": TIERS["ghost"].price_id})
    assert again.status_code == 409


async def test_a_library_checkout_is_priced_from_the_catalog(client, db, stand_in, catalog):
    buyer = person(db)
    response = await post(
        client,
        "create-library-checkout",
        buyer,
        {"item_type": "agent", "item_id": str(catalog["a1"])},
    )
    assert response.status_code == 200, response.text
    session = stand_in.sessions[response.json()["session_id"]]
    (line,) = session["_line_items"]
    assert line["price_data"]["unit_amount"] == "4900"
    assert line["price_data"]["product_data"]["description"] == "Hosted Automation: Leads routed"
    assert session["metadata"]["item_id"] == str(catalog["a1"])
    assert session["metadata"]["user_id"] == str(buyer.id)
    assert session["client_reference_id"] == str(buyer.id)
    assert session["success_url"].startswith(f"{DOMAIN}/purchase-success?session_id=")
    assert session["cancel_url"].startswith(f"{DOMAIN}/automations/a1-")


@pytest.mark.parametrize(("item", "status"), [("draft", 404), ("free", 400), ("missing", 404)])
async def test_only_published_priced_items_check_out(client, db, catalog, item, status):
    item_id = catalog.get(item, uuid.uuid4())
    response = await post(
        client,
        "create-library-checkout",
        person(db),
        {"item_type": "agent", "item_id": str(item_id)},
    )
    assert response.status_code == status, response.text


async def test_an_owned_item_is_not_sold_again(client, db, stand_in, catalog):
    buyer = person(db)
    evt, _ = await send(
        client,
        "checkout.session.completed.payment",
        "library",
        user_id=str(buyer.id),
        item_type="bundle",
        item_id=str(catalog["bundle"]),
    )
    customer = evt["data"]["object"]["customer"]
    stand_in.customers[customer] = {"id": customer, "object": "customer", "metadata": {}}
    for kind, item in (("bundle", "bundle"), ("agent", "a2")):  # a2 is in the bundle
        response = await post(
            client,
            "create-library-checkout",
            buyer,
            {"item_type": kind, "item_id": str(catalog[item])},
        )
        assert response.status_code == 409, response.text
    other = await post(
        client,
        "create-library-checkout",
        buyer,
        {"item_type": "agent", "item_id": str(catalog["a1"])},
    )
    assert other.status_code == 200


# -- the portal, the status, the success page ---------------------------------------------


@pytest.mark.parametrize("name", ["customer-portal", "billing-portal-session"])
async def test_the_billing_portal_under_both_names(client, db, stand_in, name):
    newcomer = person(db)
    none = await post(client, name, newcomer)
    assert none.json() == {
        "url": None,
        "inactive": True,
        "message": "No billing account found. Please subscribe first.",
    }
    subscriber = person(db)
    sub = await subscribe(client, subscriber, "pulse")
    stand_in.customers[sub.customer_id] = {
        "id": sub.customer_id,
        "object": "customer",
        "metadata": {},
    }
    response = await post(client, name, subscriber, origin="https://evil.example.com")
    assert response.status_code == 200, response.text
    (portal,) = stand_in.portal_sessions.values()
    assert response.json() == {"url": portal["url"]}
    assert portal["customer"] == sub.customer_id
    assert portal["return_url"] == f"{DOMAIN}/portal/dashboard"


async def test_check_subscription_reads_our_records(client, db, stand_in):
    nobody, subscriber, ghost = person(db), person(db), person(db)
    answer = (await client.get("/functions/v1/check-subscription", headers=nobody.headers())).json()
    assert (answer["subscribed"], answer["status"], answer["tier"]) == (False, "inactive", None)

    await subscribe(client, subscriber, "operator")
    for method in ("GET", "POST"):
        response = await client.request(
            method, "/functions/v1/check-subscription", headers=subscriber.headers()
        )
        answer = response.json()
        assert (answer["subscribed"], answer["status"], answer["tier"]) == (
            True,
            "active",
            "operator",
        )
        assert answer["product_id"] == TIERS["operator"].product_id
        assert answer["price_id"] == TIERS["operator"].price_id
        assert answer["subscription_end"] is not None and answer["checked_at"]

    await buy_ghost(client, ghost)
    answer = (await post(client, "check-subscription", ghost)).json()
    assert (answer["subscribed"], answer["tier"], answer["mode"]) == (True, "ghost", "payment")
    assert answer["product_id"] == TIERS["ghost"].product_id
    assert stand_in.requests == []  # no Stripe call


async def test_verify_purchase_applies_a_paid_session_once(client, db, stand_in, catalog):
    buyer, stranger = person(db), person(db)
    started = await post(
        client,
        "create-library-checkout",
        buyer,
        {"item_type": "agent", "item_id": str(catalog["a3"])},
    )
    session_id = started.json()["session_id"]

    unpaid = await post(client, "verify-purchase", buyer, {"session_id": session_id})
    assert unpaid.json()["success"] is False and unpaid.json()["complete"] is False
    assert count(db, "purchases", "stripe_session_id = %s", session_id) == 0

    session = stand_in.complete_checkout(session_id)
    for _ in range(2):
        verified = await post(client, "verify-purchase", buyer, {"session_id": session_id})
        assert verified.status_code == 200, verified.text
        assert verified.json()["success"] is True
        assert verified.json()["item_id"] == str(catalog["a3"])

    # The webhook for the same session, afterwards: nothing new.
    evt = event("checkout.session.completed.payment", session_id=session_id)
    evt["data"]["object"] = session
    assert (await deliver(client, evt, "library")).status_code == 200
    purchase = db.execute(
        "select status, user_id, amount_cents, stripe_payment_intent from public.purchases"
        " where stripe_session_id = %s",
        [session_id],
    ).fetchall()
    assert purchase == [
        {
            "status": "completed",
            "user_id": buyer.id,
            "amount_cents": 4900,
            "stripe_payment_intent": session["payment_intent"],
        }
    ]
    assert count(db, "installation_requests", "purchase_id = %s", session_id) == 1

    theirs = await post(client, "verify-purchase", stranger, {"session_id": session_id})
    assert theirs.status_code == 404
    unknown = await post(client, "verify-purchase", buyer, {"session_id": "cs_test_nope"})
    assert unknown.status_code == 404


async def test_verify_purchase_starts_a_subscription_before_its_events(client, db, stand_in):
    buyer = person(db)
    started = await post(client, "create-checkout", buyer, {"priceId": TIERS["pulse"].price_id})
    session = stand_in.complete_checkout(started.json()["session_id"])
    verified = await post(client, "verify-purchase", buyer, {"session_id": session["id"]})
    assert verified.status_code == 200, verified.text
    assert (verified.json()["status"], verified.json()["tier"]) == ("active", "pulse")
    assert tier_of(db, buyer) == "pulse"

    # Stripe's own events still win: the subscription ended at Stripe.
    subscription = stand_in.subscriptions[session["subscription"]]
    await send(
        client,
        "customer.subscription.deleted",
        "portal",
        user_id=str(buyer.id),
        customer_id=subscription["customer"],
        subscription_id=subscription["id"],
        tier="pulse",
        status="canceled",
        started=subscription["created"],
        created=subscription["created"],
    )
    assert billing(db, buyer)["status"] == "canceled"
    assert tier_of(db, buyer) is None


# -- the webhooks ----------------------------------------------------------------------------


async def test_a_library_purchase_and_its_installation_request(client, db, catalog):
    buyer = person(db)
    evt, response = await send(
        client,
        "checkout.session.completed.payment",
        "library",
        user_id=str(buyer.id),
        item_id=str(catalog["a1"]),
        amount=4900,
    )
    assert response.json() == {"received": True, "duplicate": False}
    session = evt["data"]["object"]
    purchase = db.execute(
        "select * from public.purchases where stripe_session_id = %s", [session["id"]]
    ).fetchone()
    assert (purchase["status"], purchase["item_type"], purchase["item_id"]) == (
        "completed",
        "agent",
        catalog["a1"],
    )
    assert (purchase["user_id"], purchase["email"], purchase["amount_cents"]) == (
        buyer.id,
        buyer.email,
        4900,
    )
    assert purchase["stripe_payment_intent"] == session["payment_intent"]
    request = db.execute(
        "select status, automation_id, user_id from public.installation_requests"
        " where purchase_id = %s",
        [session["id"]],
    ).fetchone()
    assert request == {"status": "received", "automation_id": catalog["a1"], "user_id": buyer.id}
    stored = db.execute(
        "select endpoint, type, outcome from public.stripe_events where id = %s", [evt["id"]]
    ).fetchall()
    assert stored == [
        {
            "endpoint": "library",
            "type": "checkout.session.completed",
            "outcome": "purchase completed",
        }
    ]
    # The same event at the portal endpoint (Stripe sends it to both) is not its concern.
    assert (await deliver(client, evt, "portal")).status_code == 200
    assert (
        one(
            db,
            "select outcome from public.stripe_events where endpoint = 'portal' and id = %s",
            evt["id"],
        )
        == "ignored: not a subscription checkout"
    )
    with db.transaction():
        act_as(db, "service_role")
        assert one(db, "select public.has_entitlement(%s, 'agent', %s)", buyer.id, catalog["a1"])


async def test_a_delayed_payment_completes_or_fails_asynchronously(client, db, catalog):
    buyer = person(db)
    paid = {"user_id": str(buyer.id), "item_id": str(catalog["a1"]), "session_id": new_id("cs")}
    await send(
        client, "checkout.session.completed.payment", "library", payment_status="unpaid", **paid
    )
    assert (
        one(
            db,
            "select status from public.purchases where stripe_session_id = %s",
            paid["session_id"],
        )
        == "pending"
    )
    assert count(db, "installation_requests", "purchase_id = %s", paid["session_id"]) == 0
    await send(client, "checkout.session.async_payment_succeeded", "library", **paid)
    assert (
        one(
            db,
            "select status from public.purchases where stripe_session_id = %s",
            paid["session_id"],
        )
        == "completed"
    )
    assert count(db, "installation_requests", "purchase_id = %s", paid["session_id"]) == 1

    failed = {"user_id": str(buyer.id), "item_id": str(catalog["a4"]), "session_id": new_id("cs")}
    await send(
        client, "checkout.session.completed.payment", "library", payment_status="unpaid", **failed
    )
    await send(client, "checkout.session.async_payment_failed", "library", **failed)
    assert (
        one(
            db,
            "select status from public.purchases where stripe_session_id = %s",
            failed["session_id"],
        )
        == "failed"
    )
    assert (
        count(db, "client_notifications", "user_id = %s and type = 'payment_failed'", buyer.id) == 1
    )


async def test_the_ghost_is_a_tier_purchase(client, db):
    buyer = person(db)
    session = await buy_ghost(client, buyer)
    purchase = db.execute(
        "select item_type, item_id, tier, status from public.purchases"
        " where stripe_session_id = %s",
        [session["id"]],
    ).fetchone()
    assert purchase == {
        "item_type": "tier",
        "item_id": None,
        "tier": "ghost",
        "status": "completed",
    }
    assert tier_of(db, buyer) == "ghost"


async def test_a_subscription_from_checkout_to_cancellation(client, db):
    user = person(db)
    sub = await subscribe(client, user, "pulse")
    row = billing(db, user)
    assert (row["stripe_customer_id"], row["subscription_id"], row["status"]) == (
        sub.customer_id,
        sub.subscription_id,
        "active",
    )
    assert (row["current_price_id"], row["current_product_id"]) == (
        TIERS["pulse"].price_id,
        TIERS["pulse"].product_id,
    )
    assert row["subscription_end"] > datetime.now(UTC) + timedelta(days=29)
    assert row["last_payment_at"] is not None
    assert tier_of(db, user) == "pulse"
    kinds = {
        r["type"]
        for r in db.execute(
            "select type from public.client_notifications where user_id = %s", [user.id]
        )
    }
    assert kinds == {"sub_active"}

    # An upgrade in the portal, then the cancellation.
    common = {
        "user_id": str(user.id),
        "customer_id": sub.customer_id,
        "subscription_id": sub.subscription_id,
    }
    now = int(datetime.now(UTC).timestamp())
    await send(
        client,
        "customer.subscription.updated",
        "portal",
        tier="operator",
        created=now + 1,
        **common,
    )
    assert tier_of(db, user) == "operator"
    await send(
        client,
        "customer.subscription.deleted",
        "portal",
        tier="operator",
        status="canceled",
        created=now + 2,
        **common,
    )
    assert billing(db, user)["status"] == "canceled"
    assert tier_of(db, user) is None
    assert count(db, "client_notifications", "user_id = %s and type = 'canceled'", user.id) == 1


async def test_events_matched_only_by_our_ids(client, db):
    stranger = person(db)
    # A subscription whose customer nobody stored and whose metadata names nobody.
    evt, _ = await send(
        client, "customer.subscription.created", "portal", user_id="someone@example.com"
    )
    assert one(db, "select outcome from public.stripe_events where id = %s", evt["id"]) == (
        "subscription active (no matching user yet)"
    )
    assert (
        one(
            db,
            "select user_id from public.billing_subscriptions where id = %s",
            evt["data"]["object"]["id"],
        )
        is None
    )
    assert billing(db, stranger) is None
    # Once the checkout names the user, the subscription is theirs.
    await send(
        client,
        "checkout.session.completed.subscription",
        "portal",
        user_id=str(stranger.id),
        customer_id=evt["data"]["object"]["customer"],
        subscription_id=evt["data"]["object"]["id"],
    )
    assert billing(db, stranger)["status"] == "active"


async def test_out_of_order_delivery_never_rolls_back(client, db):
    user = person(db)
    common = {
        "user_id": str(user.id),
        "customer_id": new_id("cus"),
        "subscription_id": new_id("sub"),
        "tier": "operator",
    }
    now = int(datetime.now(UTC).timestamp())
    await send(
        client, "customer.subscription.updated", "portal", status="past_due", created=now, **common
    )
    stale, _ = await send(
        client,
        "customer.subscription.created",
        "portal",
        status="active",
        created=now - 60,
        **common,
    )
    assert billing(db, user)["status"] == "past_due"
    assert one(db, "select outcome from public.stripe_events where id = %s", stale["id"]) == (
        "stale: a newer snapshot is stored"
    )
    await send(
        client,
        "customer.subscription.deleted",
        "portal",
        status="canceled",
        created=now - 30,
        **common,
    )
    # A later-dated update cannot bring a cancelled subscription back.
    await send(
        client,
        "customer.subscription.updated",
        "portal",
        status="active",
        created=now + 60,
        **common,
    )
    assert billing(db, user)["status"] == "canceled"


async def test_a_duplicate_answers_200_and_changes_nothing(client, db, catalog):
    buyer = person(db)
    evt = event(
        "checkout.session.completed.payment", user_id=str(buyer.id), item_id=str(catalog["a1"])
    )
    first = await deliver(client, evt, "library")
    before = {
        t: count(db, t)
        for t in (
            "purchases",
            "client_notifications",
            "installation_requests",
            "stripe_events",
            "admin_notifications",
        )
    }
    again = await deliver(client, evt, "library")
    assert first.json()["duplicate"] is False
    assert (again.status_code, again.json()) == (200, {"received": True, "duplicate": True})
    assert {t: count(db, t) for t in before} == before


def log_rows(db, response: httpx.Response) -> list[dict[str, Any]]:
    return db.execute(
        "select function_name, status_code, details from public.edge_function_logs"
        " where details ->> 'request_id' = %s",
        [response.headers["x-request-id"]],
    ).fetchall()


def signed(evt_body: bytes, secret: str, **sign: Any) -> dict[str, str]:
    return {"stripe-signature": signature(evt_body, secret, **sign)}


@pytest.mark.parametrize(
    "forgery",
    [
        "bad signature",
        "stale timestamp",
        "wrong endpoint's secret",
        "no header",
        "malformed header",
        "not json",
        "nested too deep",
        "not an event",
        "another api version",
        "body changed after signing",
    ],
)
async def test_forged_or_malformed_events_are_refused_and_change_nothing(
    client, db, catalog, forgery
):
    buyer = person(db)
    evt = event(
        "checkout.session.completed.payment", user_id=str(buyer.id), item_id=str(catalog["a1"])
    )
    payload = body(evt)
    headers = signed(payload, LIBRARY_SECRET)
    if forgery == "bad signature":
        headers = {"stripe-signature": headers["stripe-signature"][:-4] + "0000"}
    elif forgery == "stale timestamp":
        headers = signed(
            payload, LIBRARY_SECRET, timestamp=int(datetime.now(UTC).timestamp()) - 301
        )
    elif forgery == "wrong endpoint's secret":
        headers = signed(payload, PORTAL_SECRET)
    elif forgery == "no header":
        headers = {}
    elif forgery == "malformed header":
        headers = {"stripe-signature": "v1=abc"}
    elif forgery == "not json":
        payload = b"{not json"
        headers = signed(payload, LIBRARY_SECRET)
    elif forgery == "nested too deep":
        payload = b"[" * 100_000 + b"]" * 100_000
        headers = signed(payload, LIBRARY_SECRET)
    elif forgery == "not an event":
        payload = json.dumps({"id": "evt_x", "object": "charge"}).encode()
        headers = signed(payload, LIBRARY_SECRET)
    elif forgery == "another api version":
        evt["api_version"] = "2024-12-18.acacia"
        payload = body(evt)
        headers = signed(payload, LIBRARY_SECRET)
    elif forgery == "body changed after signing":
        payload = payload.replace(b'"amount_total":250000', b'"amount_total":1')
    tables = (
        "stripe_events",
        "purchases",
        "client_billing",
        "installation_requests",
        "client_notifications",
        "admin_notifications",
        "provisioning_queue",
    )
    before = {t: count(db, t) for t in tables}
    response = await client.post(PATHS["library"], content=payload, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] in (
        "invalid_signature",
        "invalid_event",
        "unsupported_api_version",
    )
    assert {t: count(db, t) for t in tables} == before
    (log,) = log_rows(db, response)
    assert (log["function_name"], log["status_code"]) == ("library-webhook", 400)


async def test_an_endpoint_without_its_secret_refuses_everything(database, db):
    app = create_app(
        settings=billing_settings(None, STRIPE_PORTAL_WEBHOOK_SECRET=""), database_url=database
    )
    await app.runtime.database.open()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await deliver(client, event("invoice.paid"), "portal")
    finally:
        await app.runtime.database.close()
    assert (response.status_code, response.json()["code"]) == (503, "not_configured")


async def test_stripe_verifies_our_fixture_signatures():
    """The scheme the tests sign with is the one the stripe library verifies."""
    payload = body(event("invoice.paid"))
    header = signature(payload, PORTAL_SECRET)
    assert stripe.WebhookSignature.verify_header(payload, header, PORTAL_SECRET, 300)
    rotated = f"{header},v1={'0' * 64}"  # during secret rotation any v1 may match
    assert stripe.WebhookSignature.verify_header(payload, rotated, PORTAL_SECRET, 300)


# -- nobody else writes billing -----------------------------------------------------------


async def test_a_buyer_cannot_change_a_purchase_or_billing_row(client, db, catalog):
    buyer = person(db)
    await subscribe(client, buyer, "pulse")
    evt, _ = await send(
        client,
        "checkout.session.completed.payment",
        "library",
        user_id=str(buyer.id),
        item_id=str(catalog["a1"]),
    )
    session_id = evt["data"]["object"]["id"]
    forged = evt["data"]["object"] | {"id": new_id("cs")}
    attempts = [
        (
            "update public.purchases set status = 'completed', amount_cents = 0"
            " where stripe_session_id = %(session)s",
            "0 rows or denied",
        ),
        ("update public.purchases set user_id = %(user)s", "denied"),
        (
            "insert into public.purchases (email, item_type, tier, amount_cents, status, user_id)"
            " values ('x@example.com', 'tier', 'ghost', 0, 'completed', %(user)s)",
            "denied",
        ),
        ("delete from public.purchases where user_id = %(user)s", "denied"),
        ("update public.client_billing set status = 'active' where user_id = %(user)s", "denied"),
        (
            "update public.client_billing set current_price_id = %(price)s"
            " where user_id = %(user)s",
            "denied",
        ),
        (
            "update public.client_billing set stripe_customer_id = 'cus_stolen'"
            " where user_id = %(user)s",
            "denied",
        ),
        (
            "update public.client_billing set past_due_since = null where user_id = %(user)s",
            "denied",
        ),
        (
            "insert into public.client_billing (user_id, status)"
            " values (gen_random_uuid(), 'active')",
            "denied",
        ),
        ("select public.receive_stripe_event('library', %(event)s)", "denied"),
        ("select public.apply_one_time_checkout('{}', now(), 'completed')", "denied"),
        ("select public.apply_stripe_subscription('{}', now(), '', false)", "denied"),
        ("select public.apply_stripe_invoice('{}', now(), true)", "denied"),
        ("select public.apply_stripe_reversal('{}', now(), 'refund')", "denied"),
        ("select public.record_stripe_customer(%(user)s, 'cus_stolen')", "denied"),
        ("select public.verify_checkout_session(%(user)s, %(forged)s)", "denied"),
        ("select public.apply_billing_grace()", "denied"),
        (
            "insert into public.stripe_events (endpoint, id, type, created, payload)"
            " values ('library', 'evt_forged', 'x', now(), '{}')",
            "denied",
        ),
    ]
    params = {
        "session": session_id,
        "user": buyer.id,
        "price": TIERS["operator"].price_id,
        "event": psycopg.types.json.Jsonb(evt),
        "forged": psycopg.types.json.Jsonb(forged),
    }
    before = (
        db.execute(
            "select * from public.purchases where user_id = %s order by id", [buyer.id]
        ).fetchall(),
        billing(db, buyer),
    )
    for statement, expected in attempts:
        try:
            with db.transaction():
                act_as(db, "authenticated", buyer.id)
                cursor = db.execute(statement, params)
                changed = cursor.rowcount
        except psycopg.errors.InsufficientPrivilege:
            continue
        assert expected == "0 rows or denied" and changed == 0, statement
    after = (
        db.execute(
            "select * from public.purchases where user_id = %s order by id", [buyer.id]
        ).fetchall(),
        billing(db, buyer),
    )
    assert after == before
    # What the buyer may do: read their rows, and change their own preferences.
    with db.transaction():
        act_as(db, "authenticated", buyer.id)
        assert len(db.execute("select id from public.purchases").fetchall()) == 1
        db.execute("update public.client_billing set renewal_reminders_enabled = false")


# -- losing payment removes access, with grace; paying again restores it ------------------


def paused_by_billing(rows: list[dict[str, Any]]) -> list[bool]:
    return [r["status"] == "paused" and r["metadata"].get("paused_by") == "billing" for r in rows]


async def test_a_deleted_subscription_pauses_and_a_new_one_restores(client, db, catalog):
    user = person(db)
    sub = await subscribe(client, user, "operator")
    live = [activate(db, user, catalog[name]) for name in ("a1", "a2", "a3")]
    common = {
        "user_id": str(user.id),
        "customer_id": sub.customer_id,
        "subscription_id": sub.subscription_id,
    }
    await send(client, "invoice.paid", "portal", **common)  # nothing lost: nothing paused
    assert paused_by_billing(mappings(db, user)) == [False] * 3

    now = int(datetime.now(UTC).timestamp())
    await send(
        client,
        "customer.subscription.deleted",
        "portal",
        status="canceled",
        created=now + 5,
        **common,
    )
    rows = mappings(db, user)
    assert paused_by_billing(rows) == [True] * 3
    assert {r["metadata"]["paused_from"] for r in rows} == {"active"}
    assert jobs(db, user, "pause_workflows") == 3
    queued = db.execute(
        "select payload ->> 'mapping_id' as mapping, status from public.provisioning_queue"
        " where user_id = %s and action = 'pause_workflows' order by created_at",
        [user.id],
    ).fetchall()
    assert {q["mapping"] for q in queued} == {str(m) for m in live}
    assert {q["status"] for q in queued} == {"queued"}  # waiting for the n8n lifecycle
    notice = db.execute(
        "select severity, metadata from public.admin_notifications"
        " where metadata ->> 'kind' = 'billing_access_paused' and metadata ->> 'user_id' = %s",
        [str(user.id)],
    ).fetchone()
    assert notice["severity"] == "warning"
    assert notice["metadata"]["reason"] == "subscription_deleted"

    # Subscribing again brings everything back.
    await subscribe(client, user, "operator", customer_id=sub.customer_id)
    assert [r["status"] for r in mappings(db, user)] == ["active"] * 3
    assert all("paused_by" not in r["metadata"] for r in mappings(db, user))
    assert jobs(db, user, "resume_workflows") == 3


async def test_a_smaller_tier_keeps_the_oldest_activations(client, db, catalog):
    user = person(db)
    sub = await subscribe(client, user, "operator")
    oldest, *_ = [activate(db, user, catalog[name]) for name in ("a1", "a2")]
    # a1 bought outright: the only one still entitled on The Pulse, which allows one.
    await send(
        client,
        "checkout.session.completed.payment",
        "library",
        user_id=str(user.id),
        item_id=str(catalog["a1"]),
    )
    now = int(datetime.now(UTC).timestamp())
    await send(
        client,
        "customer.subscription.updated",
        "portal",
        tier="pulse",
        created=now + 5,
        user_id=str(user.id),
        customer_id=sub.customer_id,
        subscription_id=sub.subscription_id,
    )
    rows = mappings(db, user)
    assert [r["id"] for r in rows if r["status"] == "active"] == [oldest]
    assert paused_by_billing(rows) == [False, True]


async def test_an_unpaid_subscription_keeps_access_through_the_grace_period(client, db, catalog):
    user = person(db)
    month_ago = int((datetime.now(UTC) - timedelta(days=30)).timestamp())
    sub = await subscribe(client, user, "operator", at=month_ago)
    activate(db, user, catalog["a1"])
    failed_at = int((datetime.now(UTC) - timedelta(days=3)).timestamp())
    common = {
        "user_id": str(user.id),
        "customer_id": sub.customer_id,
        "subscription_id": sub.subscription_id,
    }
    renewal = {"invoice_id": new_id("in"), **common}
    await send(client, "invoice.payment_failed", "portal", created=failed_at, **renewal)
    await send(
        client,
        "customer.subscription.updated",
        "portal",
        status="past_due",
        created=failed_at + 1,
        **common,
    )
    row = billing(db, user)
    assert row["status"] == "past_due"
    assert row["past_due_since"] == datetime.fromtimestamp(failed_at, UTC)
    assert tier_of(db, user) == "operator"  # within the grace period
    assert paused_by_billing(mappings(db, user)) == [False]
    assert (
        count(db, "client_notifications", "user_id = %s and type = 'payment_failed'", user.id) == 1
    )
    status = (await post(client, "check-subscription", user)).json()
    assert status["status"] == "past_due" and status["subscribed"] is True
    assert status["grace_ends_at"] is not None

    # The grace period ends with nobody's event: the queue trigger looks for it.
    db.execute(
        "update public.system_registry set value = '2'"
        " where namespace = 'billing' and key = 'grace_days'"
    )
    try:
        assert tier_of(db, user) is None
        response = await client.post(
            "/functions/v1/queue-processor", headers={"authorization": f"Bearer {CRON}"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["billing_grace"]["paused"] >= 1
        assert paused_by_billing(mappings(db, user)) == [True]
        reason = mappings(db, user)[0]["metadata"]["paused_reason"]
        assert reason == "grace_expired"

        # Paying the invoice restores access.
        await send(client, "invoice.paid", "portal", created=failed_at + 3600, **renewal)
        assert billing(db, user)["past_due_since"] is None
        assert [r["status"] for r in mappings(db, user)] == ["active"]
        assert tier_of(db, user) == "operator"
    finally:
        db.execute(
            "update public.system_registry set value = '7'"
            " where namespace = 'billing' and key = 'grace_days'"
        )


async def test_a_refunded_ghost_pauses_everything(client, db, catalog):
    user = person(db)
    session = await buy_ghost(client, user)
    for name in ("a1", "a2"):
        activate(db, user, catalog[name])
    refund = {
        "customer_id": session["customer"],
        "payment_intent": session["payment_intent"],
        "amount": 2_500_000,
    }
    await send(client, "charge.refunded", "portal", refunded=False, **refund)  # partial
    assert paused_by_billing(mappings(db, user)) == [False, False]
    evt, _ = await send(client, "charge.refunded", "portal", **refund)
    assert one(db, "select outcome from public.stripe_events where id = %s", evt["id"]) == (
        "charge refunded: 1 purchase(s)"
    )
    assert (
        one(db, "select status from public.purchases where stripe_session_id = %s", session["id"])
        == "refunded"
    )
    assert tier_of(db, user) is None
    assert paused_by_billing(mappings(db, user)) == [True, True]
    assert jobs(db, user, "pause_workflows") == 2


async def test_a_disputed_item_pauses_its_activation(client, db, catalog):
    user = person(db)
    await subscribe(client, user, "pulse")  # one live activation of items bought
    evt, _ = await send(
        client,
        "checkout.session.completed.payment",
        "library",
        user_id=str(user.id),
        item_id=str(catalog["a4"]),
        amount=4900,
    )
    activate(db, user, catalog["a4"])
    session = evt["data"]["object"]
    await send(
        client,
        "charge.dispute.created",
        "portal",
        payment_intent=session["payment_intent"],
        amount=4900,
    )
    assert (
        one(db, "select status from public.purchases where stripe_session_id = %s", session["id"])
        == "disputed"
    )
    assert paused_by_billing(mappings(db, user)) == [True]
    notice = db.execute(
        "select severity from public.admin_notifications where metadata ->> 'kind' ="
        " 'payment_disputed' and metadata ->> 'payment_intent' = %s",
        [session["payment_intent"]],
    ).fetchone()
    assert notice == {"severity": "critical"}


async def test_a_refunded_subscription_payment_pauses_until_the_next_payment(client, db, catalog):
    user = person(db)
    sub = await subscribe(client, user, "operator")
    activate(db, user, catalog["a3"])
    now = int(datetime.now(UTC).timestamp())
    await send(client, "charge.refunded", "portal", customer_id=sub.customer_id, created=now + 5)
    assert billing(db, user)["payment_reversed_at"] is not None
    assert tier_of(db, user) is None
    assert paused_by_billing(mappings(db, user)) == [True]
    await send(
        client,
        "invoice.paid",
        "portal",
        created=now + 10,
        user_id=str(user.id),
        customer_id=sub.customer_id,
        subscription_id=sub.subscription_id,
    )
    assert tier_of(db, user) == "operator"
    assert [r["status"] for r in mappings(db, user)] == ["active"]


async def test_a_refund_nobody_matches_tells_the_operators(client, db):
    evt, _ = await send(client, "charge.refunded", "portal")
    charge = evt["data"]["object"]["id"]
    assert (
        one(
            db,
            "select count(*) from public.admin_notifications where metadata ->> 'charge_id' = %s",
            charge,
        )
        == 1
    )


async def test_admins_are_never_paused(client, db, catalog):
    admin = person(db, admin=True)
    sub = await subscribe(client, admin, "pulse")
    activate(db, admin, catalog["a1"])
    await send(
        client,
        "customer.subscription.deleted",
        "portal",
        status="canceled",
        user_id=str(admin.id),
        customer_id=sub.customer_id,
        subscription_id=sub.subscription_id,
        created=int(datetime.now(UTC).timestamp()) + 5,
    )
    assert [r["status"] for r in mappings(db, admin)] == ["active"]


# -- any order, any number of times: the same state ------------------------------------------


def history(rng: random.Random, user: str, items: list[str], start: int) -> list[dict[str, Any]]:
    """One client's events as Stripe would send them, oldest first: catalog purchases (paid,
    paid late, failed; some refunded or disputed), maybe The Ghost, and a subscription that
    renews, fails, recovers, changes tier, gets refunded and may end."""
    moment = start
    customer = new_id("cus")
    events: list[dict[str, Any]] = []

    def add(name: str, **values: Any) -> None:
        nonlocal moment
        moment += rng.randint(1, 3600)
        events.append(event(name, created=moment, customer_id=customer, user_id=user, **values))

    for item in rng.sample(items, rng.randint(1, len(items))):  # an item is sold once
        paid = {
            "session_id": new_id("cs"),
            "payment_intent": new_id("pi"),
            "item_id": item,
            "amount": 4900,
        }
        outcome = rng.choice(["paid", "late", "failed"])
        if outcome == "paid":
            add("checkout.session.completed.payment", **paid)
        else:
            add("checkout.session.completed.payment", payment_status="unpaid", **paid)
            add(
                f"checkout.session.async_payment_{'succeeded' if outcome == 'late' else 'failed'}",
                **paid,
            )
        if outcome != "failed" and rng.random() < 0.25:
            add("charge.refunded", payment_intent=paid["payment_intent"], amount=4900)
        elif outcome != "failed" and rng.random() < 0.15:
            add("charge.dispute.created", payment_intent=paid["payment_intent"], amount=4900)
    if rng.random() < 0.2:
        ghost = {"session_id": new_id("cs"), "payment_intent": new_id("pi"), "amount": 2_500_000}
        add("checkout.session.completed.payment", **ghost)
        events[-1]["data"]["object"]["metadata"] = {
            "purpose": "tier",
            "tier": "ghost",
            "user_id": user,
        }
        if rng.random() < 0.3:
            add("charge.refunded", amount=2_500_000, payment_intent=ghost["payment_intent"])

    tier = rng.choice(["pulse", "operator"])
    subscription = {"subscription_id": new_id("sub"), "started": moment + 1}
    first = new_id("in")
    add("checkout.session.completed.subscription", tier=tier, invoice_id=first, **subscription)
    add("customer.subscription.created", tier=tier, status="incomplete", **subscription)
    add("invoice.paid", tier=tier, invoice_id=first, **subscription)
    add("customer.subscription.updated", tier=tier, **subscription)
    for month in range(1, rng.randint(2, 6)):
        period = {"period_start": moment, "period_end": moment + 30 * 86_400}
        invoice = new_id("in")
        if rng.random() < 0.4:
            add("invoice.payment_failed", tier=tier, invoice_id=invoice, **subscription)
            add(
                "customer.subscription.updated",
                tier=tier,
                status="past_due",
                **period,
                **subscription,
            )
            if rng.random() < 0.6:
                add("invoice.paid", tier=tier, invoice_id=invoice, **subscription)
                add("customer.subscription.updated", tier=tier, **period, **subscription)
        else:
            add("invoice.paid", tier=tier, invoice_id=invoice, **subscription)
            add("customer.subscription.updated", tier=tier, **period, **subscription)
        if rng.random() < 0.2:
            tier = "operator" if tier == "pulse" else "pulse"
            add("customer.subscription.updated", tier=tier, **period, **subscription)
        if month > 1 and rng.random() < 0.15:
            add("charge.refunded", payment_intent=new_id("pi"))
    if rng.random() < 0.3:
        add("customer.subscription.deleted", tier=tier, status="canceled", **subscription)
    return events


STATE = {
    "purchases": "select stripe_session_id, user_id, email, item_type, item_id, tier, status,"
    " amount_cents, stripe_payment_intent from public.purchases order by stripe_session_id",
    "client_billing": "select user_id, stripe_customer_id, subscription_id, status,"
    " current_price_id, current_product_id, subscription_end, past_due_since, last_payment_at,"
    " payment_reversed_at from public.client_billing order by user_id",
    "billing_subscriptions": "select id, user_id, customer_id, status, price_id,"
    " current_period_end, snapshot_at, snapshot_event from public.billing_subscriptions"
    " order by id",
    "installation_requests": "select purchase_id, user_id, automation_id, status"
    " from public.installation_requests order by purchase_id",
}


async def delivered_state(
    url: str, users: list[str], items: list[str], deliveries: list[tuple[dict, str]], parallel: int
) -> dict[str, list[dict[str, Any]]]:
    deploy.push(url, settings_for(), out=lambda _: None)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for user in users:
            conn.execute(
                "insert into auth.users (id, email) values (%s, %s)",
                [user, f"client-{user[:8]}@example.com"],
            )
        for item in items:
            conn.execute(
                "insert into public.automation_agents (id, slug, name, status, price_cents)"
                " values (%s, %s, 'Item', 'published', 4900)",
                [item, f"item-{item[:8]}"],
            )
    app = await open_app(url, None)
    gate = asyncio.Semaphore(parallel)

    async def one_delivery(client: httpx.AsyncClient, evt: dict, endpoint: str) -> None:
        async with gate:
            response = await deliver(client, evt, endpoint)
        assert response.status_code == 200, response.text

    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            if parallel == 1:
                for evt, endpoint in deliveries:
                    await one_delivery(client, evt, endpoint)
            else:
                await asyncio.gather(*(one_delivery(client, e, p) for e, p in deliveries))
    finally:
        await app.runtime.database.close()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return {name: conn.execute(query).fetchall() for name, query in STATE.items()}


async def test_2000_events_with_duplicates_in_any_order_end_in_the_same_state(create_database):
    rng = random.Random(20261203)
    items = [str(uuid.uuid4()) for _ in range(4)]
    start = int((datetime.now(UTC) - timedelta(days=200)).timestamp())
    users: list[str] = []
    deliveries: list[tuple[dict, str]] = []
    while len(deliveries) < 1600:
        users.append(str(uuid.uuid4()))
        for evt in history(rng, users[-1], items, start + rng.randint(0, 86_400)):
            deliveries += [(evt, endpoint) for endpoint in endpoints_for(evt)]
    in_order = sorted(deliveries[:1600], key=lambda d: d[0]["created"])
    shuffled = in_order + [rng.choice(in_order) for _ in range(400)]  # 20 % duplicates
    rng.shuffle(shuffled)
    assert len(shuffled) == 2000 and len({(e["id"], p) for e, p in shuffled}) == 1600

    expected = await delivered_state(create_database(), users, items, in_order, parallel=1)
    actual = await delivered_state(create_database(), users, items, shuffled, parallel=8)
    assert {name: len(rows) for name, rows in expected.items()} == {
        name: len(rows) for name, rows in actual.items()
    }
    for name in STATE:
        assert actual[name] == expected[name], name
    statuses = {row["status"] for row in expected["purchases"]}
    assert {"completed", "failed", "refunded"} <= statuses  # the history covers the cases
    assert {"active", "past_due", "canceled"} & {r["status"] for r in expected["client_billing"]}
