"""Stripe events of one-time payments (catalog items, the one-time tier): signed with
STRIPE_LIBRARY_WEBHOOK_SECRET, stored once and applied in SQL (`receive_stripe_event`)."""

from aerelion import stripe_webhooks
from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    return await stripe_webhooks.receive(call, "library")


function = Function(
    name="library-webhook",
    handler=handle,
    auth="signature",
    summary="Stripe webhook: one-time payments (checkout.session.*)",
)
