"""Receiving Stripe webhooks: verify, store once, apply — for `library-webhook` and
`stripe-portal-webhook`.

The `Stripe-Signature` header is verified over the raw body by the stripe library
(`WebhookSignature.verify_header`: HMAC-SHA256 of `<t>.<body>` with the endpoint's own
`whsec_…` secret, any `v1` entry may match, at most 300 s old). A missing or bad
signature, a body that is not a Stripe event, or an event of another API version is
answered 400 and changes nothing (the request's log row is all it leaves). A verified
event goes to `receive_stripe_event()` in one transaction: stored once per endpoint and
applied there; a duplicate answers 200 and changes nothing. Nothing here calls Stripe and
nothing is rate-limited, so Stripe gets its answer at once.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

from aerelion.errors import ApiError
from aerelion.functions import Call
from aerelion.stripe_client import API_VERSION

__all__ = ["ENDPOINT_SECRETS", "TOLERANCE_SECONDS", "receive", "verified_event"]

TOLERANCE_SECONDS = 300
# Each endpoint has its own signing secret (the original shared one between both).
ENDPOINT_SECRETS = {
    "library": "STRIPE_LIBRARY_WEBHOOK_SECRET",
    "portal": "STRIPE_PORTAL_WEBHOOK_SECRET",
}


def _malformed(message: str) -> ApiError:
    return ApiError(400, "invalid_event", message)


def verified_event(raw: bytes, header: str | None, secret: str) -> dict[str, Any]:
    """The event, if `header` signs `raw` with `secret`; a 400 otherwise."""
    try:
        stripe.WebhookSignature.verify_header(raw, header, secret, TOLERANCE_SECONDS)
    except (stripe.SignatureVerificationError, ValueError):
        raise ApiError(
            400, "invalid_signature", "The Stripe-Signature header does not verify"
        ) from None
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be an event
        raise _malformed("The body is not JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise _malformed("The body is not a Stripe event")
    data = event.get("data")
    if (
        not isinstance(event.get("id"), str)
        or not event["id"].startswith("evt_")
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("created"), int)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise _malformed("The body is not a Stripe event")
    if event.get("api_version") != API_VERSION:
        raise ApiError(
            400,
            "unsupported_api_version",
            f"Events must use API version {API_VERSION}",
            hint="set the webhook endpoint's API version in the Stripe dashboard",
        )
    return event


async def receive(call: Call[Any], endpoint: str) -> dict[str, Any]:
    secret = call.secret(ENDPOINT_SECRETS[endpoint])
    if secret is None:
        raise ApiError(503, "not_configured", "This webhook endpoint is not configured")
    event = verified_event(call.raw_body, call.headers.get("stripe-signature"), secret)
    async with call.as_service() as db:
        row = await db.one(
            "receive_stripe_event", {"endpoint": endpoint, "event": call.raw_body.decode()}
        )
    assert row is not None
    call.note.message = f"STRIPE_EVENT {event['type']} {event['id']}: " + (
        "duplicate" if row["duplicate"] else row["outcome"]
    )
    call.note.details = {
        "event_id": event["id"],
        "event_type": event["type"],
        "duplicate": row["duplicate"],
    }
    return {"received": True, "duplicate": row["duplicate"]}
