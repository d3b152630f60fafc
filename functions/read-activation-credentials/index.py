"""An admin holding a human signature reads an activation's credentials in clear. The
database checks both, audits the read before handing out the sealed values, and the
plaintext exists only in this response (never cached)."""

from uuid import UUID

from aerelion.credentials import require_vault
from aerelion.errors import ApiError
from aerelion.functions import Call, Function, Reply
from aerelion.validation import RequestModel
from aerelion.vault import Context, Sealed, VaultError


class ReadCredentials(RequestModel):
    credentialId: UUID | None = None
    requestId: UUID | None = None


async def handle(call: Call[ReadCredentials]) -> Reply:
    wanted = call.body if call.method == "POST" else call.query
    if wanted.credentialId is None and wanted.requestId is None:
        raise ApiError(400, "invalid_request", "Name credentialId or requestId")
    vault = require_vault(call.settings)
    async with call.as_caller() as db:
        rows = await db.all(
            "read_activation_credentials",
            {"credential_id": wanted.credentialId, "request_id": wanted.requestId},
        )
    credentials = []
    for row in rows:
        entry = {
            "id": row["id"],
            "requestId": row["request_id"],
            "credentialType": row["credential_type"],
            "serviceName": row["service_name"],
            "status": row["status"],
            "createdAt": row["created_at"],
            "createdBy": row["created_by"],
            "metadata": row["metadata"],
        }
        if row["status"] == "revoked":
            entry["credentials"] = None
        else:
            try:
                entry["credentials"] = vault.open_json(
                    Sealed(
                        row["encrypted_data"],
                        row["encryption_iv"],
                        row["encryption_tag"],
                        row["key_version"],
                    ),
                    Context("activation_credentials", "encrypted_data", str(row["id"])),
                )
            except VaultError:
                entry["error"] = "Decryption failed"
        credentials.append(entry)
    call.note.message = f"CREDENTIAL_READ count={len(credentials)}"
    return Reply(
        {
            "success": True,
            "credentials": credentials,
            "accessedBy": call.principal.user_id,
            "warning": "Plaintext credentials: handle with care; this read is audited.",
        },
        headers={"cache-control": "no-store"},
    )


function = Function(
    name="read-activation-credentials",
    handler=handle,
    auth="ths",
    methods=("GET", "POST"),
    body=ReadCredentials,
    query=ReadCredentials,
    summary="Read an activation's credentials in clear (admin + human signature; audited)",
)
