from pydantic import Field

from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class Raise(RequestModel):
    code: str = Field(pattern=r"^[0-9A-Z]{5}$")
    message: str = "refused"


async def handle(call: Call[Raise]) -> dict:
    async with call.as_caller() as db:
        await db.run("raise_sqlstate", {"code": call.body.code, "message": call.body.message})
    return {}


function = Function(name="sql-error", handler=handle, auth="user | none", body=Raise)
