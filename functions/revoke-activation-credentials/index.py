"""The activation's owner (or an admin) revokes a credential; its sealed value is
destroyed (`revoke_activation_credential()`)."""

from uuid import UUID

from pydantic import Field

from aerelion.functions import Call, Function
from aerelion.validation import RequestModel


class RevokeCredential(RequestModel):
    credentialId: UUID
    reason: str | None = Field(default=None, max_length=500)


async def handle(call: Call[RevokeCredential]) -> dict:
    async with call.as_caller() as db:
        revoked = await db.one(
            "revoke_activation_credential",
            {"credential_id": call.body.credentialId, "reason": call.body.reason},
        )
    assert revoked is not None
    return {
        "success": True,
        "message": "Credential revoked",
        "credential": {
            "id": revoked["id"],
            "serviceName": revoked["service_name"],
            "revokedAt": revoked["revoked_at"],
            "revokedBy": revoked["revoked_by"],
        },
    }


function = Function(
    name="revoke-activation-credentials",
    handler=handle,
    auth="user",
    body=RevokeCredential,
    summary="Revoke a credential of the caller's activation (owner or admin)",
)
