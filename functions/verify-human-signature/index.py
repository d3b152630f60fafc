"""The human-signature (THS) challenge: scored as the original scored it; a pass is
recorded by the server and earns a 24 h token for `X-THS-Token`."""

from pydantic import Field

from aerelion import ths
from aerelion.errors import ApiError
from aerelion.functions import Call, Function
from aerelion.tokens import TokenSigner
from aerelion.validation import RequestModel


class Challenge(RequestModel):
    mouseTrail: list[ths.MousePoint] = Field(max_length=5000)
    keystrokes: list[ths.Keystroke] = Field(max_length=500)
    commandString: str = Field(max_length=100)
    challengeDurationMs: float


async def handle(call: Call[Challenge]) -> dict:
    secret = call.secret("THS_SIGNING_SECRET")
    if not secret:  # fail closed before anything is scored or stored
        raise ApiError(503, "not_configured", "Human signatures are not configured")
    body = call.body
    if body.commandString != ths.COMMAND:
        raise ApiError(400, "COMMAND_MISMATCH", "The command string does not match")
    if not ths.MIN_DURATION_MS <= body.challengeDurationMs <= ths.MAX_DURATION_MS:
        raise ApiError(400, "TIMING_ANOMALY", "The challenge took an implausible time")
    verdict = ths.score(body.mouseTrail, body.keystrokes)
    analysis = verdict.behavioral_data(
        len(body.mouseTrail), len(body.keystrokes), body.challengeDurationMs
    )
    if not verdict.human:
        call.note.message = f"THS_REJECTED score={verdict.veracity}"
        return {
            "verified": False,
            "veracityScore": verdict.veracity,
            "message": "IDENTITY_VERACITY_UNCONFIRMED",
            "governance_note": "Behavioural entropy below the threshold; try again.",
        }
    user_id = str(call.principal.user_id)
    token = ths.issue(TokenSigner.from_secret(secret), user_id, verdict.veracity)
    async with call.as_service() as db:
        await db.run(
            "record_human_verification",
            {
                "user_id": user_id,
                "veracity_score": verdict.veracity,
                "behavioral_data": analysis,
                "jti": token.jti,
                "purpose": ths.PURPOSE,
                "token_hash": ths.token_hash(token.value),
                "expires_at": token.expires_at,
            },
        )
    call.note.message = f"THS_VERIFIED score={verdict.veracity}"
    return {
        "verified": True,
        "veracityScore": verdict.veracity,
        "token": token.value,
        "analysis": analysis,
        "message": "HUMAN_SIGNATURE_CONFIRMED",
        "expiresAt": token.expires_at,
    }


function = Function(
    name="verify-human-signature",
    handler=handle,
    auth="user",
    body=Challenge,
    summary="Score the human-signature challenge; a pass returns an X-THS-Token",
    rate_limit=(10, 300),
)
