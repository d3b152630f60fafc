"""Stripe webhook events for tests: the JSON fixtures in tests/fixtures/stripe/, filled in,
and signed as Stripe signs them (HMAC-SHA256 of `<t>.<body>` with the endpoint secret,
in `Stripe-Signature: t=<t>,v1=<hex>`), computed here with hmac and hashlib."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from aerelion.stripe_client import API_VERSION
from aerelion.stripe_config import STRIPE_TIERS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
LIBRARY_SECRET = "whsec_library_" + "l" * 32
PORTAL_SECRET = "whsec_portal_" + "p" * 32
SECRETS = {"library": LIBRARY_SECRET, "portal": PORTAL_SECRET}
PATHS = {
    "library": "/functions/v1/library-webhook",
    "portal": "/functions/v1/stripe-portal-webhook",
}
TIERS = {tier.key: tier for tier in STRIPE_TIERS}


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{uuid.uuid4().hex[:24]}"


@cache
def _template(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _fill(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    if isinstance(value, str):
        if value in values:
            return values[value]
        for key, replacement in values.items():
            if key in value and isinstance(replacement, str):
                value = value.replace(key, replacement)
        return value
    return value


def event(name: str, **values: Any) -> dict[str, Any]:
    """The fixture `name` with `__KEY__` placeholders filled from `key=value` (defaults:
    fresh ids, now, the pinned API version, The Operator's price)."""
    now = int(time.time())
    tier = TIERS[values.pop("tier", "operator")]
    defaults: dict[str, Any] = {
        "event_id": new_id("evt"),
        "api_version": API_VERSION,
        "created": now,
        "started": now,
        "period_start": now,
        "period_end": now + 30 * 86_400,
        "session_id": new_id("cs"),
        "subscription_id": new_id("sub"),
        "invoice_id": new_id("in"),
        "charge_id": new_id("ch"),
        "dispute_id": new_id("dp"),
        "payment_intent": new_id("pi"),
        "customer_id": new_id("cus"),
        "user_id": str(uuid.uuid4()),
        "item_type": "agent",
        "item_id": str(uuid.uuid4()),
        "payment_status": "paid",
        "status": "active",
        "tier": tier.key,
        "price_id": tier.price_id,
        "product_id": tier.product_id,
        "amount": 250_000,
        "amount_refunded": None,
        "refunded": True,
    }
    defaults.update(values)
    if defaults["amount_refunded"] is None:
        defaults["amount_refunded"] = defaults["amount"] if defaults["refunded"] else 1_000
    filled = _fill(
        copy.deepcopy(_template(name)), {f"__{k.upper()}__": v for k, v in defaults.items()}
    )
    return filled


def body(evt: dict[str, Any]) -> bytes:
    return json.dumps(evt, separators=(",", ":")).encode()


def signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{moment}.".encode() + payload, hashlib.sha256)
    return f"t={moment},v1={mac.hexdigest()}"


def endpoints_for(evt: dict[str, Any]) -> list[str]:
    """The endpoints Stripe delivers the event to, as the README sets them up."""
    kind = evt["type"]
    if kind == "checkout.session.completed":
        return ["library", "portal"]  # both endpoints subscribe to it; each takes its mode
    if kind.startswith("checkout.session."):
        return ["library"]
    return ["portal"]


async def deliver(client: Any, evt: dict[str, Any], endpoint: str, **sign: Any) -> Any:
    payload = body(evt)
    return await client.post(
        PATHS[endpoint],
        content=payload,
        headers={
            "stripe-signature": signature(payload, sign.pop("secret", SECRETS[endpoint]), **sign),
            "content-type": "application/json",
        },
    )
