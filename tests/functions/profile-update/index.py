from uuid import UUID

from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Rename(RequestModel):
    profile_id: UUID
    display_name: str
    fail_after: bool = False


async def handle(call: Call[Rename]) -> dict:
    async with call.as_caller() as db:
        rows = await db.all(
            "update_display_name",
            {"display_name": call.body.display_name, "id": call.body.profile_id},
        )
        if call.body.fail_after:
            await db.run("fail")
    return {"updated": len(rows)}


function = Function(name="profile-update", handler=handle, auth="user", body=Rename)
