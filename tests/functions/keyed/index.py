from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_caller() as db:
        row = await db.one("request_headers")
    return {"headers": row["headers"]}


function = Function(name="keyed", handler=handle, auth="secret:TEST_HOOK_KEY@x-test-key")
