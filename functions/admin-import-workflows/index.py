"""Import n8n workflow files and create or update the catalog entry (`automation_agents`)
that runs each (admins); templates stay immutable, so an update links a new template."""

from pydantic import Field

from aerelion import templates
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class WorkflowFile(RequestModel):
    filename: str = Field(min_length=1, max_length=255)
    content: str = Field(min_length=2, max_length=2_000_000)
    override_slug: str | None = Field(
        default=None, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=50
    )


class ImportWorkflows(RequestModel):
    workflows: list[WorkflowFile] = Field(min_length=1, max_length=50)


async def handle(call: Call[ImportWorkflows]) -> dict:
    items = [item.model_dump() for item in call.body.workflows]
    results = [r async for r in templates.import_workflows(call.as_caller, items)]
    call.note.message = f"WORKFLOWS_IMPORTED count={len(results)}"
    return {"results": results}


function = Function(
    name="admin-import-workflows",
    handler=handle,
    auth="admin",
    body=ImportWorkflows,
    summary="Import n8n workflows with their catalog entries",
    max_body_bytes=8 * 1024 * 1024,
)
