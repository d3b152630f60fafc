"""The success page's fallback: read the Checkout Session back from Stripe and apply it as
its webhook event would be (`verify_checkout_session()`, idempotent with the webhook). The
session must be the caller's own (its client_reference_id); the caller comes from the JWT."""

from pydantic import Field

from aerelion.functions import Call, Function
from aerelion.stripe_client import StripeApi
from aerelion.validation import RequestModel


class VerifyRequest(RequestModel):
    session_id: str = Field(pattern=r"^cs_[A-Za-z0-9_]{1,250}$")


async def handle(call: Call[VerifyRequest]) -> dict:
    async with StripeApi.from_settings(call.settings) as api:
        session = await api.checkout_session(call.body.session_id, expand_subscription=True)
    async with call.as_service() as db:
        row = await db.one(
            "verify_checkout_session", {"user_id": call.principal.user_id, "session": session}
        )
    assert row is not None
    call.note.message = f"PURCHASE_VERIFIED {row['mode']}: {row['outcome']}"
    call.note.details = {"session_id": call.body.session_id}
    return {
        "success": bool(row["complete"])
        and row["status"] in ("completed", "paid", "active", "trialing"),
        "complete": row["complete"],
        "mode": row["mode"],
        "status": row["status"],
        "item_type": row["item_type"],
        "item_id": row["item_id"],
        "tier": row["tier"],
        "amount_cents": row["amount_cents"],
    }


function = Function(
    name="verify-purchase",
    handler=handle,
    auth="user",
    body=VerifyRequest,
    summary="Confirm a finished Checkout Session (success-page fallback of the webhooks)",
)
