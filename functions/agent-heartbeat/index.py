"""An agent's workflow reports in (header `x-heartbeat-key`, compared in constant time).
`record_agent_heartbeat()` checks the agent against the registry, the status and the sizes,
and names the level and message of this request's one log row, as the original wrote it."""

from typing import Any, Literal

from pydantic import Field

from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Heartbeat(RequestModel):
    agent_id: str = Field(pattern=r"^AG-[0-9]{2}$")
    status: Literal["NOMINAL", "PROCESSING", "DRIFT", "ERROR"] = "NOMINAL"
    message: str = Field(default="", max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=100)


async def handle(call: Call[Heartbeat]) -> dict:
    body = call.body
    async with call.as_service() as db:
        beat = await db.one(
            "record_agent_heartbeat",
            {
                "agent_id": body.agent_id,
                "status": body.status,
                "message": body.message,
                "metadata": body.metadata,
            },
        )
    assert beat is not None
    call.note.level = beat.pop("log_level")
    call.note.message = beat.pop("log_message")
    call.note.details = {"agent_id": body.agent_id, "status": body.status}
    return {"success": True, "heartbeat": beat}


function = Function(
    name="agent-heartbeat",
    handler=handle,
    auth="secret:HEARTBEAT_SECRET@x-heartbeat-key",
    body=Heartbeat,
    max_body_bytes=32 * 1024,
    summary="An agent's heartbeat (n8n workflows; shared secret in x-heartbeat-key)",
)
