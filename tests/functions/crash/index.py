from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    raise RuntimeError("secret value sk_live_do_not_leak")


function = Function(name="crash", handler=handle, auth="none")
