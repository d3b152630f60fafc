"""A server's SSH and n8n credentials. The owner sees them once (and again once after
each `rotate`); an admin reading a client's server needs a human signature (X-THS-Token).
Every view is audited; responses are never cached."""

from typing import Literal
from uuid import UUID

from aerelion import vps_operations
from aerelion.functions import Call, Function, Reply
from aerelion.validation import RequestModel


class CredentialsRequest(RequestModel):
    instance_id: UUID
    action: Literal["view", "rotate"] = "view"


async def handle(call: Call[CredentialsRequest]) -> Reply:
    body = call.body
    call.note.details["instance_id"] = str(body.instance_id)
    if body.action == "rotate":
        call.note.message = f"CREDENTIALS_ROTATED instance={body.instance_id}"
        result = await vps_operations.rotate_credentials(call, body.instance_id)
    else:
        result = await vps_operations.view_credentials(call, body.instance_id)
        call.note.message = (
            f"CREDENTIAL_READ instance={body.instance_id} first_view={result['first_view']}"
        )
    return Reply(result, headers={"cache-control": "no-store"})


function = Function(
    name="hostinger-credentials",
    handler=handle,
    auth="user|ths",  # any signed-in user; `ths` lets browsers send X-THS-Token (admins)
    body=CredentialsRequest,
    summary="View a server's credentials once, or rotate them (admins: + human signature)",
    rate_limit=(30, 60),
)
