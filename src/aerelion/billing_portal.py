"""The Stripe Billing Portal for the caller's subscription: one handler served under the
original's two names, `customer-portal` and `billing-portal-session`.

The customer is the one stored for the caller (`billing_portal_target()`, as the caller);
the portal returns to the app's dashboard (registry `app/domain`). Without a billing
account the answer is 200 `{url: null, inactive: true, message}`, as the original's
billing-portal-session answered."""

from __future__ import annotations

from typing import Any

from aerelion import billing
from aerelion.functions import Call, Function
from aerelion.stripe_client import StripeApi

NO_ACCOUNT = "No billing account found. Please subscribe first."


async def handle(call: Call[None]) -> dict[str, Any]:
    async with call.as_caller() as db:
        target = await db.one("billing_portal_target") or {}
    customer = target.get("customer_id")
    if not customer:
        call.note.message = "BILLING_PORTAL no billing account"
        return {"url": None, "inactive": True, "message": NO_ACCOUNT}
    return_url = f"{billing.app_url(target.get('domain'))}/portal/dashboard"
    async with StripeApi.from_settings(call.settings) as api:
        session = await api.create_portal_session(customer, return_url)
    call.note.message = "BILLING_PORTAL session created"
    return {"url": session["url"]}


def portal_function(name: str) -> Function:
    return Function(
        name=name,
        handler=handle,
        auth="user",
        summary="Open the Stripe Billing Portal for the caller's subscription",
    )
