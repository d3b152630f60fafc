"""Stripe events of subscriptions (checkouts, subscriptions, invoices, refunds, disputes):
signed with STRIPE_PORTAL_WEBHOOK_SECRET, stored once and applied in SQL
(`receive_stripe_event`)."""

from aerelion import stripe_webhooks
from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    return await stripe_webhooks.receive(call, "portal")


function = Function(
    name="stripe-portal-webhook",
    handler=handle,
    auth="signature",
    summary="Stripe webhook: subscriptions, invoices, refunds and disputes",
)
