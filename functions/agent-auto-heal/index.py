"""Heal an agent, or a client's automation (admins; the worker heals agents in DRIFT,
ERROR or OFFLINE on its own). An agent's workflow is deactivated and reactivated on its
n8n node, or redeployed when n8n no longer has it; a client's workflows (found through
their activation's mapping) are restarted. Either way n8n must then report them active;
the outcome is recorded, logged and raised to the operators (`record_agent_heal`,
`record_mapping_heal`)."""

from uuid import UUID

from pydantic import Field, model_validator

from aerelion.activation import lifecycle_for
from aerelion.agent_workflows import AgentWorkflows
from aerelion.errors import ApiError
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Heal(RequestModel):
    agent_id: str | None = Field(default=None, pattern=r"^AG-[0-9]{2}$")
    activation_request_id: UUID | None = None

    @model_validator(mode="after")
    def one_subject(self) -> "Heal":
        if (self.agent_id is None) == (self.activation_request_id is None):
            raise ValueError("give either agent_id or activation_request_id")
        return self


async def handle(call: Call[Heal]) -> dict:
    body, actor = call.body, call.principal.user_id
    if body.agent_id is not None:
        subject = body.agent_id
        result = await AgentWorkflows(call.database, call.settings).heal(
            body.agent_id, "admin", actor
        )
        failed = next((a["error"] for a in result["actions"] if not a["ok"]), None)
    else:
        subject = f"activation {body.activation_request_id}"
        lifecycle = lifecycle_for(call.database, call.settings)
        result = await lifecycle.restart(body.activation_request_id, actor)
        failed = result["error"]
    call.note.details = {"subject": subject, "success": result["success"]}
    if not result["success"]:
        raise ApiError(
            502, "AUTO_HEAL_FAILED", f"Healing {subject} failed", details=result, hint=failed
        )
    call.note.message = f"AUTO_HEAL {subject} verified"
    return result


function = Function(
    name="agent-auto-heal",
    handler=handle,
    auth="admin",
    body=Heal,
    max_body_bytes=1024,
    summary="Heal an agent's or a client's workflow on n8n and verify it (admins)",
)
