"""A client asks for a VPS: accepted at once (202) and provisioned by the queue worker.

Every rule — who may ask, plan and region, the tier's room for another VPS, the quota of
requests in progress, the rate limit, idempotency — is `request_vps_provisioning()` in
SQL, run as the caller. Poll the job through PostgREST by its id.
"""

from uuid import UUID

from pydantic import Field

from aerelion.functions import Call, Function, Reply
from aerelion.validation import RequestModel

ACCEPTED = "VPS provisioning job accepted. Poll provisioning_queue by job_id for status."


class ProvisionRequest(RequestModel):
    plan: str = Field(default="starter", min_length=1, max_length=40)
    region: str = Field(default="us-east-1", min_length=1, max_length=40)
    activation_request_id: UUID | None = None
    notes: str | None = Field(default=None, max_length=500)
    target_user_id: UUID | None = Field(default=None, description="admins only")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


async def handle(call: Call[ProvisionRequest]) -> Reply:
    body = call.body
    async with call.as_caller() as db:
        job_id = await db.value(
            "request_vps_provisioning",
            {
                "plan": body.plan,
                "region": body.region,
                "activation_request_id": body.activation_request_id,
                "notes": body.notes,
                "target_user_id": body.target_user_id,
                "idempotency_key": body.idempotency_key or call.headers.get("idempotency-key"),
            },
        )
    call.note.message = f"PROVISION_QUEUED job={job_id} plan={body.plan} region={body.region}"
    call.note.details = {"job_id": str(job_id)}
    return Reply(
        {
            "success": True,
            "status": "queued",
            "job_id": job_id,
            "message": ACCEPTED,
        },
        status=202,
    )


function = Function(
    name="hostinger-provision",
    handler=handle,
    auth="user",
    body=ProvisionRequest,
    summary="Request a VPS (202, then poll provisioning_queue by job_id)",
    rate_limit=None,  # request_vps_provisioning() enforces its own (registry) limit
)
