"""A Stripe Checkout Session for a tier: The Pulse or The Operator (subscriptions) or The
Ghost (one-time). Only the tiers' price ids in the registry are accepted, and the rules
(one subscription at a time, the one-time tier once, the rate limit) are
`prepare_tier_checkout()` in SQL, run as the caller. Redirects go to the registry's
`app/domain`."""

from typing import Literal

from pydantic import Field

from aerelion import billing
from aerelion.functions import Call, Function
from aerelion.stripe_client import StripeApi
from aerelion.validation import RequestModel


class CheckoutRequest(RequestModel):
    price_id: str = Field(alias="priceId", min_length=1, max_length=255)
    mode: Literal["subscription", "payment"] | None = Field(
        default=None, description="must be the tier's mode when given"
    )


async def handle(call: Call[CheckoutRequest]) -> dict:
    async with call.as_caller() as db:
        tier = await db.one(
            "prepare_tier_checkout", {"price_id": call.body.price_id, "mode": call.body.mode}
        )
    assert tier is not None and call.principal.user_id is not None
    base = billing.app_url(tier["domain"])
    async with StripeApi.from_settings(call.settings) as api:
        customer = await billing.customer_id(call, api, tier["customer_id"])
        session = await api.create_checkout_session(
            billing.tier_checkout(call.principal.user_id, tier, customer, base)
        )
    call.note.message = f"CHECKOUT_CREATED tier={tier['tier']}"
    call.note.details = {"session_id": session["id"], "tier": tier["tier"]}
    return {"url": session["url"], "session_id": session["id"]}


function = Function(
    name="create-checkout",
    handler=handle,
    auth="user",
    body=CheckoutRequest,
    summary="Start a Stripe Checkout Session for a tier (registry price ids only)",
)
