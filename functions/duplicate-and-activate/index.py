"""Create a client's isolated copy of the automation's workflow template on the
least-loaded n8n node and activate it (the service role: the queue worker, operators'
tools; clients reach the same through n8n-provision). Every check — the request's owner,
the entitlement, the tier's live activations, one live mapping per activation — is
`begin_n8n_activation()`; a failure undoes what was created on n8n and releases the
capacity (the mapping says `error` and why)."""

from uuid import UUID

from aerelion.activation import lifecycle_for
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Activate(RequestModel):
    activationRequestId: UUID


async def handle(call: Call[Activate]) -> dict:
    request_id = call.body.activationRequestId
    call.note.details["activation_request_id"] = str(request_id)
    result = await lifecycle_for(call.database, call.settings).activate(
        request_id, call.principal.user_id
    )
    call.note.message = f"N8N_ACTIVATED activation={request_id}"
    return result


function = Function(
    name="duplicate-and-activate",
    handler=handle,
    auth="service",
    body=Activate,
    summary="Copy the workflow template onto the least-loaded n8n node and activate it",
    rate_limit=(1200, 60),  # the service activates in bulk (a backlog, a migration)
)
