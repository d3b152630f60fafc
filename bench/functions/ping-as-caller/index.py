"""The benchmark's trivial function: one query, as the caller."""

from aerelion.functions import Call, Function


async def handle(call: Call[None]) -> dict:
    async with call.as_caller() as db:
        return await db.one("bench_ping")


# Without the per-caller rate limit: one user hammers it on purpose.
function = Function(
    name="ping-as-caller", handler=handle, auth="user", methods=("GET",), rate_limit=None
)
