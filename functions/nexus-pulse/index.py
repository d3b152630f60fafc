"""An admin's manual pulse for an agent (`record_manual_pulse()`: registered agent, known
status, telemetry kept with who sent it)."""

from typing import Any, Literal

from pydantic import Field

from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Pulse(RequestModel):
    agent_id: str = Field(pattern=r"^AG-[0-9]{2}$")
    status: Literal["NOMINAL", "PROCESSING", "DRIFT", "ERROR"] = "NOMINAL"
    telemetry: dict[str, Any] = Field(default_factory=dict, max_length=100)


async def handle(call: Call[Pulse]) -> dict:
    body = call.body
    async with call.as_caller() as db:
        beat = await db.one(
            "record_manual_pulse",
            {"agent_id": body.agent_id, "status": body.status, "telemetry": body.telemetry},
        )
    call.note.message = f"MANUAL_PULSE {body.agent_id} {body.status}"
    call.note.details = {"agent_id": body.agent_id, "status": body.status}
    return {"success": True, "heartbeat": beat}


function = Function(
    name="nexus-pulse",
    handler=handle,
    auth="admin",
    body=Pulse,
    max_body_bytes=32 * 1024,
    summary="Send a manual pulse for an agent (admins)",
)
