"""Connect-Once: a client's integration credentials, sealed to their row; `check_ready`
tells an activation what is missing, and a `connect` that completes it queues the
activation (run by the n8n lifecycle)."""

from typing import Literal
from uuid import UUID

from pydantic import Field

from aerelion.credentials import CredentialMap, require_vault
from aerelion.errors import ApiError
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel
from aerelion.vault import Context

Provider = Field(default=None, pattern=r"^[a-z0-9_]{1,40}$")


class Connect(RequestModel):
    action: Literal["connect", "revoke", "status", "check_ready"]
    provider: str | None = Provider
    credentials: CredentialMap | None = None
    grantedScopes: list[str] | None = Field(default=None, max_length=50)
    connectedEmail: str | None = Field(default=None, max_length=320)
    activationRequestId: UUID | None = None


async def handle(call: Call[Connect]) -> dict:
    body = call.body
    async with call.as_caller() as db:
        if body.action == "status":
            return {"connections": await db.all("integration_status")}
        if body.action == "check_ready":
            if body.activationRequestId is None:
                raise ApiError(400, "invalid_request", "check_ready needs activationRequestId")
            return await db.value("activation_readiness", {"request_id": body.activationRequestId})
        if body.provider is None:
            raise ApiError(400, "invalid_request", f"{body.action} needs provider")
        if body.action == "revoke":
            revoked = await db.value("revoke_integration", {"provider": body.provider})
            return {"success": True, "revoked": revoked}
        if not body.credentials:
            raise ApiError(400, "invalid_request", "connect needs credentials")
        vault = require_vault(call.settings)
        slot = await db.value("integration_connection_slot", {"provider": body.provider})
        sealed = vault.seal_json(
            body.credentials, Context("integration_connections", "encrypted_payload", str(slot))
        )
        await db.one(
            "connect_integration",
            {
                "id": slot,
                "provider": body.provider,
                "ciphertext": sealed.ciphertext,
                "iv": sealed.iv,
                "tag": sealed.tag,
                "key_version": sealed.key_version,
                "granted_scopes": body.grantedScopes,
                "connected_email": body.connectedEmail,
            },
        )
        job_id = None
        if body.activationRequestId is not None:
            job_id = await db.value(
                "request_auto_activation", {"request_id": body.activationRequestId}
            )
    call.note.message = f"INTEGRATION_CONNECTED provider={body.provider}"
    return {
        "success": True,
        "autoActivated": job_id is not None,
        "activationJobId": job_id,
        "message": f"{body.provider} connected",
    }


function = Function(
    name="connect-integration",
    handler=handle,
    auth="user",
    body=Connect,
    summary="Connect, revoke or check the caller's integrations (Connect-Once)",
    max_body_bytes=64 * 1024,
)
