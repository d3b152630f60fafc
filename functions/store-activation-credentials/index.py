"""A client hands over the credentials one of their activations needs: sealed here,
bound to the row, stored by `store_activation_credential()` (ownership checked in SQL)."""

from uuid import UUID

from pydantic import Field

from aerelion.credentials import CredentialMap, require_vault
from aerelion.functions import Call, Function
from aerelion.validation import RequestModel
from aerelion.vault import Context


class StoreCredentials(RequestModel):
    requestId: UUID
    credentialType: str = Field(pattern=r"^[a-z0-9_]{1,60}$")
    serviceName: str = Field(min_length=1, max_length=100)
    credentials: CredentialMap
    metadata: dict[str, str] | None = Field(default=None, max_length=20)


async def handle(call: Call[StoreCredentials]) -> dict:
    body = call.body
    vault = require_vault(call.settings)
    async with call.as_caller() as db:
        slot = await db.value(
            "activation_credential_slot",
            {"request_id": body.requestId, "credential_type": body.credentialType},
        )
        sealed = vault.seal_json(
            body.credentials, Context("activation_credentials", "encrypted_data", str(slot))
        )
        stored = await db.one(
            "store_activation_credential",
            {
                "id": slot,
                "request_id": body.requestId,
                "credential_type": body.credentialType,
                "service_name": body.serviceName,
                "ciphertext": sealed.ciphertext,
                "iv": sealed.iv,
                "tag": sealed.tag,
                "key_version": sealed.key_version,
                "metadata": body.metadata or {},
            },
        )
    assert stored is not None
    call.note.message = f"CREDENTIAL_STORED type={body.credentialType}"
    return {
        "success": True,
        "credential": {
            "id": stored["id"],
            "credentialType": stored["credential_type"],
            "serviceName": stored["service_name"],
            "status": stored["status"],
            "createdAt": stored["created_at"],
        },
        "message": "Credentials stored securely",
    }


function = Function(
    name="store-activation-credentials",
    handler=handle,
    auth="user",
    body=StoreCredentials,
    summary="Store sealed credentials for one of the caller's activations",
    max_body_bytes=64 * 1024,
)
