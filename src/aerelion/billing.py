"""What the checkout functions share: the buyer's Stripe customer, the redirect URLs (built
from the registry's `app/domain`, never from the caller's Origin) and the parameters of
the Checkout Sessions. The rules themselves (which prices, who may buy what) are SQL:
`prepare_tier_checkout()` and `prepare_library_checkout()`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from aerelion.errors import ApiError
from aerelion.functions import Call
from aerelion.stripe_client import StripeApi

# Stripe puts the session id where this placeholder stands.
SESSION_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$")
_BASE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def app_url(domain: str | None) -> str:
    """The client application's base URL: `https://<app/domain>`, or the registry value
    itself when it already is a base URL (`http://localhost:5173` for local work)."""
    value = (domain or "").strip().rstrip("/")
    if _BASE.match(value):
        return value
    if _HOST.match(value):
        return f"https://{value}"
    raise ApiError(503, "not_configured", "The registry's app/domain is not set")


async def customer_id(call: Call[Any], api: StripeApi, stored: str | None) -> str:
    """The caller's Stripe customer: the stored one, else found by our user id in its
    metadata or created, then stored (the first stored one wins)."""
    if stored:
        return stored
    user_id = call.principal.user_id
    assert user_id is not None  # the checkout functions are for signed-in users
    email = call.principal.claims.get("email")
    found = await api.customer_for(user_id, email if isinstance(email, str) else None)
    async with call.as_service() as db:
        return await db.value("record_stripe_customer", {"user_id": user_id, "customer_id": found})


def tier_checkout(
    user_id: uuid.UUID, tier: Mapping[str, Any], customer: str, base: str
) -> dict[str, Any]:
    """A Checkout Session for a tier's registry price: a subscription, or the one-time
    tier. The user id travels in client_reference_id and in the metadata of the session
    and of what it creates (the subscription, or the PaymentIntent)."""
    metadata = {"purpose": "tier", "tier": tier["tier"], "user_id": str(user_id)}
    params: dict[str, Any] = {
        "mode": tier["mode"],
        "customer": customer,
        "client_reference_id": str(user_id),
        "line_items": [{"price": tier["price_id"], "quantity": 1}],
        "metadata": metadata,
        "success_url": f"{base}/portal/dashboard?checkout=success&session_id={SESSION_PLACEHOLDER}",
        "cancel_url": f"{base}/?checkout=cancelled",
    }
    if tier["mode"] == "subscription":
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    return params


def library_checkout(
    user_id: uuid.UUID, item: Mapping[str, Any], customer: str, base: str
) -> dict[str, Any]:
    """A one-time Checkout Session for a catalog item at its catalog price; the metadata
    binds the buyer and the item."""
    kind = item["item_type"]
    metadata = {
        "purpose": "library",
        "item_type": kind,
        "item_id": str(item["item_id"]),
        "item_slug": item["slug"],
        "user_id": str(user_id),
    }
    label = "Hosted Automation" if kind == "agent" else "System Bundle"
    listing = "automations" if kind == "agent" else "bundles"
    return {
        "mode": "payment",
        "customer": customer,
        "client_reference_id": str(user_id),
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": item["price_cents"],
                    "product_data": {
                        "name": item["name"],
                        "description": f"{label}: {item['description'] or item['name']}",
                        "metadata": {"item_type": kind, "item_id": str(item["item_id"])},
                    },
                },
                "quantity": 1,
            }
        ],
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": f"{base}/purchase-success?session_id={SESSION_PLACEHOLDER}",
        "cancel_url": f"{base}/{listing}/{item['slug']}?canceled=true",
    }
