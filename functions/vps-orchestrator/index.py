"""A client's servers: `list`, `metrics`, `reboot`, `scale_request`; and, for admins,
`resolve_scale_request`. Ownership, statuses, rate limits and the metrics cache are SQL
functions run as the caller (owner or admin; the original's error words)."""

from typing import Literal
from uuid import UUID

from pydantic import Field

from aerelion import vps_operations
from aerelion.errors import ApiError
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class OrchestratorRequest(RequestModel):
    action: Literal["list", "metrics", "reboot", "scale_request", "resolve_scale_request"]
    instance_id: UUID | None = None
    message: str | None = Field(default=None, max_length=1000)
    scale_request_id: UUID | None = None
    resolution: Literal["resolved", "declined"] | None = None


async def handle(call: Call[OrchestratorRequest]) -> dict:
    body = call.body
    if body.action == "list":
        async with call.as_caller() as db:
            return {"success": True, "instances": await db.all("list_vps_instances")}
    if body.action == "resolve_scale_request":
        if body.scale_request_id is None or body.resolution is None:
            raise ApiError(400, "invalid_request", "name scale_request_id and resolution")
        async with call.as_caller() as db:
            resolved = await db.one(
                "resolve_vps_scale_request",
                {
                    "request_id": body.scale_request_id,
                    "status": body.resolution,
                    "note": body.message,
                },
            )
        return {"success": True, "scale_request": resolved}
    if body.instance_id is None:
        raise ApiError(400, "invalid_request", f"{body.action} needs instance_id")
    call.note.details["instance_id"] = str(body.instance_id)
    if body.action == "metrics":
        return {"success": True, "vitality": await vps_operations.metrics(call, body.instance_id)}
    if body.action == "reboot":
        call.note.message = f"NODE_REBOOT instance={body.instance_id}"
        return await vps_operations.reboot(call, body.instance_id)
    async with call.as_caller() as db:
        request = await db.one(
            "request_vps_scale", {"instance_id": body.instance_id, "message": body.message}
        )
    call.note.message = f"SCALE_REQUEST instance={body.instance_id}"
    call.note.level = "warn"
    return {"success": True, "message": "SCALE_REQUEST_LOGGED", "scale_request": request}


function = Function(
    name="vps-orchestrator",
    handler=handle,
    auth="user",
    body=OrchestratorRequest,
    summary="List your servers, read their metrics, reboot them or ask for more resources",
    rate_limit=(600, 60),  # metrics are served from a cache; dashboards poll
)
