"""Operators look at provisioning jobs and retry or cancel them (admins; audited in SQL)."""

from typing import Literal
from uuid import UUID

from pydantic import Field

from aerelion.errors import ApiError
from aerelion.functions import Call, Function
from aerelion.operations import JOB_QUERIES
from aerelion.validation import RequestModel


class JobsRequest(RequestModel):
    action: Literal["list", "show", "retry", "cancel"]
    job_id: UUID | None = None
    status: (
        Literal["queued", "processing", "waiting", "completed", "failed", "retrying", "cancelled"]
        | None
    ) = None
    limit: int = Field(default=50, ge=1, le=500)


QUERIES = {
    "show": "show_provisioning_job",
    "retry": "retry_provisioning_job",
    "cancel": "cancel_provisioning_job",
}


async def handle(call: Call[JobsRequest]) -> dict:
    body = call.body
    async with call.as_caller() as db:
        if body.action == "list":
            return {
                "jobs": await db.all(
                    "list_provisioning_jobs", {"status": body.status, "limit": body.limit}
                )
            }
        if body.job_id is None:
            raise ApiError(400, "invalid_request", f"{body.action} needs job_id")
        job = await db.one(JOB_QUERIES[body.action], {"job_id": body.job_id})
    if job is None:
        raise ApiError(404, "not_found", "No such job")
    call.note.message = f"JOB_{body.action.upper()} {body.job_id}"
    return {"job": job}


function = Function(
    name="provisioning-jobs",
    handler=handle,
    auth="admin",
    body=JobsRequest,
    summary="List, show, retry or cancel provisioning jobs (admins)",
)
