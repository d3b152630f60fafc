"""AG-07's after-action report for the last `window_hours`, built from the telemetry in
SQL (`aar_telemetry()`), as Markdown in JSON or as a one-page HTML."""

from typing import Literal

from pydantic import Field
from starlette.responses import HTMLResponse

from aerelion import aar
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class ReportRequest(RequestModel):
    window_hours: int = Field(default=24, ge=1, le=720)
    format: Literal["markdown", "html"] = "markdown"


async def handle(call: Call[ReportRequest]) -> dict | HTMLResponse:
    async with call.as_caller() as db:
        telemetry = await db.value("aar_telemetry", {"window_hours": call.body.window_hours})
    ref_id = aar.reference_id(telemetry)
    call.note.message = f"AAR generated for {call.body.window_hours}h window ({ref_id})"
    if call.body.format == "html":
        return HTMLResponse(aar.render_html(telemetry), headers={"cache-control": "no-store"})
    return {
        "success": True,
        "ref_id": ref_id,
        "window_hours": call.body.window_hours,
        "risk": aar.assessment(telemetry)["risk"],
        "markdown": aar.render_markdown(telemetry),
    }


function = Function(
    name="generate-aar",
    handler=handle,
    auth="admin",
    body=ReportRequest,
    summary="The after-action report of the last hours (admins): Markdown or HTML",
)
