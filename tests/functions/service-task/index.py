from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_caller() as db:
        return await db.one("current_role")


function = Function(name="service-task", handler=handle, auth="service")
