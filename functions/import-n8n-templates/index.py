"""Import n8n workflow files as immutable templates (admins): each file's SHA-256 of
canonical JSON decides duplicates (skipped), its node types the providers it needs."""

from pydantic import Field

from aerelion import templates
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class TemplateFile(RequestModel):
    filename: str = Field(min_length=1, max_length=255)
    content: str = Field(min_length=2, max_length=2_000_000)
    name: str | None = Field(default=None, max_length=200)
    slug: str | None = Field(default=None, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=60)
    description: str | None = Field(default=None, max_length=2000)


class ImportTemplates(RequestModel):
    templates: list[TemplateFile] = Field(min_length=1, max_length=100)


async def handle(call: Call[ImportTemplates]) -> dict:
    report: dict[str, list] = {"imported": [], "skipped": [], "errors": []}
    items = [item.model_dump() for item in call.body.templates]
    async for outcome, entry in templates.import_templates(call.as_caller, items):
        report["errors" if outcome == "error" else outcome].append(entry)
    call.note.message = (
        f"TEMPLATES_IMPORTED imported={len(report['imported'])}"
        f" skipped={len(report['skipped'])} errors={len(report['errors'])}"
    )
    return report


function = Function(
    name="import-n8n-templates",
    handler=handle,
    auth="admin",
    body=ImportTemplates,
    summary="Import n8n workflow files as immutable templates",
    max_body_bytes=8 * 1024 * 1024,
)
