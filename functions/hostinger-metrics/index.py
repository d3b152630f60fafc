"""A server's live metrics alone (the dashboard polls this): the `vitality` of
`vps-orchestrator`'s `metrics`, from the same cache."""

from uuid import UUID

from aerelion import vps_operations
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class MetricsRequest(RequestModel):
    instance_id: UUID


async def handle(call: Call[MetricsRequest]) -> dict:
    call.note.details["instance_id"] = str(call.body.instance_id)
    return {"success": True, "vitality": await vps_operations.metrics(call, call.body.instance_id)}


function = Function(
    name="hostinger-metrics",
    handler=handle,
    auth="user",
    body=MetricsRequest,
    summary="A server's live metrics (cached per instance for hostinger/metrics_cache_s)",
    rate_limit=(600, 60),  # served from a cache; dashboards poll
)
