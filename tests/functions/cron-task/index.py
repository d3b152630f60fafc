from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    return {"kind": call.principal.kind}


function = Function(name="cron-task", handler=handle, auth="secret:TEST_CRON_SECRET | service")
