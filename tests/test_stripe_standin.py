"""The Stripe stand-in answers as Stripe does: form-encoded requests, its error shape,
idempotent POSTs, the key it was given, and the faults tests switch on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from aerelion.standins.stripe import StripeStandIn, decode_form
from aerelion.stripe_client import API_VERSION, StripeApi
from aerelion.stripe_config import STRIPE_TIERS

KEY = "sk_test_" + "s" * 32


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StripeStandIn]:
    with StripeStandIn(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(stand_in: StripeStandIn) -> None:
    stand_in.reset()


def test_forms_decode_as_stripe_encodes_them():
    assert decode_form(
        [
            ("mode", "payment"),
            ("line_items[0][price]", "price_1"),
            ("line_items[0][quantity]", "1"),
            ("metadata[user_id]", "u"),
            ("expand[]", "subscription"),
        ]
    ) == {
        "mode": "payment",
        "line_items": [{"price": "price_1", "quantity": "1"}],
        "metadata": {"user_id": "u"},
        "expand": ["subscription"],
    }


def test_errors_have_stripes_shape(stand_in):
    base = stand_in.url
    refused = httpx.get(f"{base}/v1/prices/{STRIPE_TIERS[0].price_id}")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "invalid_request_error"
    auth = {"authorization": f"Bearer {KEY}"}
    missing = httpx.get(f"{base}/v1/subscriptions/sub_nope", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "message": "No such subscription: 'sub_nope'",
        "code": "resource_missing",
        "param": "id",
    }
    assert missing.headers["request-id"].startswith("req_")
    stand_in.fail_next("prices.retrieve", 429)
    stand_in.fail_next("/v1/prices", 500)
    limited = httpx.get(f"{base}/v1/prices/{STRIPE_TIERS[0].price_id}", headers=auth)
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limit")
    broken = httpx.get(f"{base}/v1/prices/{STRIPE_TIERS[0].price_id}", headers=auth)
    assert (broken.status_code, broken.json()["error"]["type"]) == (500, "api_error")
    price = httpx.get(f"{base}/v1/prices/{STRIPE_TIERS[0].price_id}", headers=auth).json()
    assert (price["type"], price["unit_amount"]) == ("recurring", 9900)


def test_an_idempotency_key_replays_the_first_answer(stand_in):
    headers = {"authorization": f"Bearer {KEY}", "idempotency-key": "k-1"}
    first = httpx.post(
        f"{stand_in.url}/v1/customers", data={"email": "a@example.com"}, headers=headers
    )
    again = httpx.post(
        f"{stand_in.url}/v1/customers", data={"email": "a@example.com"}, headers=headers
    )
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    assert len(stand_in.customers) == 1
    other = httpx.post(
        f"{stand_in.url}/v1/customers", data={"email": "b@example.com"}, headers=headers
    )
    assert (other.status_code, other.json()["error"]["type"]) == (400, "idempotency_error")


def test_checkout_sessions_are_validated(stand_in):
    auth = {"authorization": f"Bearer {KEY}"}
    pulse, ghost = STRIPE_TIERS[0], STRIPE_TIERS[2]
    cases = [
        ({"success_url": "https://x"}, "mode"),
        ({"mode": "payment"}, "success_url"),
        (
            {"mode": "payment", "success_url": "https://x", "line_items[0][price]": "price_x"},
            "line_items[0][price]",
        ),
        (
            {"mode": "payment", "success_url": "https://x", "line_items[0][price]": pulse.price_id},
            "line_items[0][price]",
        ),
        (
            {
                "mode": "subscription",
                "success_url": "https://x",
                "line_items[0][price]": ghost.price_id,
            },
            "line_items",
        ),
        (
            {
                "mode": "payment",
                "success_url": "https://x",
                "customer": "cus_nope",
                "line_items[0][price]": ghost.price_id,
            },
            "customer",
        ),
    ]
    for form, param in cases:
        refused = httpx.post(f"{stand_in.url}/v1/checkout/sessions", data=form, headers=auth)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, param), form
    assert stand_in.sessions == {}


@pytest.mark.anyio
async def test_the_library_talks_to_it_with_the_pinned_version(stand_in):
    async with StripeApi(KEY, stand_in.url) as api:
        customer = await api.customer_for(uuid.uuid4(), "c@example.com")
        session = await api.create_checkout_session(
            {
                "mode": "subscription",
                "customer": customer,
                "line_items": [{"price": STRIPE_TIERS[1].price_id, "quantity": 1}],
                "success_url": "https://app.example.com/done",
                "subscription_data": {"metadata": {"user_id": "u"}},
            }
        )
        stand_in.complete_checkout(session["id"])
        read = await api.checkout_session(session["id"], expand_subscription=True)
    assert read["status"] == "complete"
    subscription = read["subscription"]
    assert subscription["metadata"] == {"user_id": "u"}
    assert subscription["items"]["data"][0]["price"]["id"] == STRIPE_TIERS[1].price_id
    assert {version for *_, version in stand_in.requests} == {API_VERSION}


def test_it_listens_on_loopback_only(stand_in):
    assert stand_in.url.startswith("http://127.0.0.1:")
    for server in stand_in._server.servers:
        for sock in server.sockets:
            assert sock.getsockname()[0] == "127.0.0.1"
