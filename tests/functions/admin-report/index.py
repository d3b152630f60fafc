from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_caller() as db:
        return {"visible_logs": await db.value("visible_logs"), "admin": call.principal.is_admin}


function = Function(name="admin-report", handler=handle, auth="admin", methods=("GET",))
