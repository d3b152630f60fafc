import uuid

from aerelion.functions import Call, Function, Reply


async def handle(call: Call[None]) -> Reply:
    return Reply({"status": "queued", "job_id": uuid.uuid4()}, status=202)


function = Function(name="accepted", handler=handle, auth="none")
