"""A one-time Stripe Checkout Session for a catalog automation or bundle, at its catalog
price. The item must be published and not already the caller's (`prepare_library_checkout()`
in SQL, as the caller); the session's metadata binds the buyer and the item."""

from typing import Literal
from uuid import UUID

from aerelion import billing
from aerelion.functions import Call, Function
from aerelion.stripe_client import StripeApi
from aerelion.validation import RequestModel


class LibraryCheckoutRequest(RequestModel):
    item_type: Literal["agent", "bundle"]
    item_id: UUID


async def handle(call: Call[LibraryCheckoutRequest]) -> dict:
    async with call.as_caller() as db:
        item = await db.one(
            "prepare_library_checkout",
            {"item_type": call.body.item_type, "item_id": call.body.item_id},
        )
    assert item is not None and call.principal.user_id is not None
    base = billing.app_url(item["domain"])
    async with StripeApi.from_settings(call.settings) as api:
        customer = await billing.customer_id(call, api, item["customer_id"])
        session = await api.create_checkout_session(
            billing.library_checkout(call.principal.user_id, item, customer, base)
        )
    call.note.message = f"LIBRARY_CHECKOUT_CREATED {item['item_type']} {item['slug']}"
    call.note.details = {"session_id": session["id"], "item_id": str(item["item_id"])}
    return {"url": session["url"], "session_id": session["id"]}


function = Function(
    name="create-library-checkout",
    handler=handle,
    auth="user",
    body=LibraryCheckoutRequest,
    summary="Start a Stripe Checkout Session for a catalog automation or bundle",
)
