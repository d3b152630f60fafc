from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_caller() as db:
        return await db.one("whoami")


function = Function(name="whoami", handler=handle, auth="user", methods=("GET", "POST"))
