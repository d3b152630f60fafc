"""Deploy the seven agents' heartbeat workflows to the n8n mesh (admins), idempotently: a
second call changes nothing. Each workflow POSTs to `app/functions_url`'s agent-heartbeat
with the key held in an n8n credential, never inlined into the workflow."""

from pydantic import Field

from aerelion.agent_workflows import AgentWorkflows
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Deploy(RequestModel):
    # a node's id, URL or label; default: where the agents run, else the least loaded
    node: str | None = Field(default=None, min_length=1, max_length=300)


async def handle(call: Call[Deploy]) -> dict:
    agents = AgentWorkflows(call.database, call.settings)
    result = await agents.deploy(call.body.node, call.principal.user_id)
    summary = result["summary"]
    call.note.message = (
        f"AGENT_WORKFLOWS_DEPLOYED {summary['total'] - summary['unchanged']} changed"
        f" {summary['error']} errors"
    )
    call.note.details = {"node": result["node"], "summary": summary}
    return result


function = Function(
    name="deploy-agent-workflows",
    handler=handle,
    auth="admin",
    body=Deploy,
    max_body_bytes=4 * 1024,
    summary="Deploy the agents' heartbeat workflows to n8n (admins)",
)
