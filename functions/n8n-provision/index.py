"""A client's automation on n8n: `activate`, `pause`, `resume`, `revoke` (final) and
`retrigger`, for the activation's owner (admins may act on any). The rules are SQL
(`begin_n8n_activation`, `begin_n8n_lifecycle`, `finish_n8n_lifecycle`); the n8n calls go to
the node the activation runs on."""

from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from aerelion.activation import lifecycle_for
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Provision(RequestModel):
    action: Literal["activate", "pause", "resume", "revoke", "retrigger"]
    activationRequestId: UUID
    config: dict[str, Any] | None = Field(default=None, max_length=50)


async def handle(call: Call[Provision]) -> dict:
    body = call.body
    call.note.details["activation_request_id"] = str(body.activationRequestId)
    lifecycle = lifecycle_for(call.database, call.settings)
    actor = call.principal.user_id
    if body.action == "activate":
        result = await lifecycle.activate(body.activationRequestId, actor)
    else:
        result = await lifecycle.act(body.activationRequestId, actor, body.action, body.config)
    call.note.message = f"N8N_{body.action.upper()} activation={body.activationRequestId}"
    return result


function = Function(
    name="n8n-provision",
    handler=handle,
    auth="user",
    body=Provision,
    summary="Activate, pause, resume, revoke or retrigger your automation",
    max_body_bytes=64 * 1024,
)
