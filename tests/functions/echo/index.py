from typing import Literal

from pydantic import Field

from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class EchoBody(RequestModel):
    name: str = Field(min_length=1, max_length=50)
    count: int = Field(ge=0, le=1000)
    mode: Literal["STEALTH", "SENTINEL", "WAR_ROOM"]
    tags: list[str] = Field(default_factory=list, max_length=5)


class EchoQuery(RequestModel):
    verbose: bool = False


async def handle(call: Call[EchoBody]) -> dict:
    call.note.message = f"echoed {call.body.mode}"
    return {"body": call.body, "verbose": call.query.verbose}


function = Function(
    name="echo",
    handler=handle,
    auth="none",
    methods=("POST", "PUT"),
    body=EchoBody,
    query=EchoQuery,
    summary="Echo a validated body",
    max_body_bytes=2048,
)
