"""What the caller holds, from our own billing records (`billing_status()`, as the caller):
no Stripe call. `subscribed` is true for any tier held now, The Ghost included."""

from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_caller() as db:
        status = await db.one("billing_status")
    return dict(status or {})


function = Function(
    name="check-subscription",
    handler=handle,
    auth="user",
    methods=("GET", "POST"),
    summary="The caller's tier and subscription status (from client_billing)",
)
