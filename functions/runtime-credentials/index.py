"""What an n8n workflow fetches at run time: the client's decrypted credentials for a live
activation on the calling node. The caller is a node, known by its runtime secret
(`Authorization: Bearer <runtime_secret>`, never its API key); every read leaves an audit
row (node, activation, providers — never values); answers are never cached."""

from typing import Any
from uuid import UUID

from pydantic import Field

from aerelion import n8n_nodes
from aerelion.credentials import require_vault
from aerelion.errors import ApiError
from aerelion.functions import Call, Function, Reply
from aerelion.n8n_nodes import NodeSecretPolicy
from aerelion.validation import RequestModel
from aerelion.vault import Context, Sealed, VaultError

NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate", "Pragma": "no-cache"}


class Lookup(RequestModel):
    activation_id: UUID | None = None


class Body(RequestModel):
    activation_id: UUID | None = Field(default=None)


async def handle(call: Call[Any]) -> Reply:
    node_id, _fallback = await n8n_nodes.node_of_runtime_secret(
        call.database, call.settings, call.headers.get("authorization", "").partition(" ")[2]
    )
    activation_id = (call.body.activation_id if call.body else None) or (
        call.query.activation_id if call.query else None
    )
    if activation_id is None:
        raise ApiError(400, "invalid_request", "activation_id is required")
    vault = require_vault(call.settings)
    async with call.as_service() as db:
        found = await db.value(
            "read_runtime_credentials", {"instance_id": node_id, "request_id": activation_id}
        )
    credentials: dict[str, Any] = {}
    for sealed in found.pop("sealed"):
        try:
            credentials[sealed["provider"]] = vault.open_json(
                Sealed(sealed["ciphertext"], sealed["iv"], sealed["tag"], sealed["key_version"]),
                Context("integration_connections", "encrypted_payload", str(sealed["id"])),
            )
        except VaultError:
            credentials[sealed["provider"]] = {"error": "decryption_failed"}
    call.note.message = f"RUNTIME_CREDENTIALS activation={activation_id}"
    call.note.details["providers"] = sorted(credentials)
    return Reply({**found, "credentials": credentials}, headers=NO_STORE)


function = Function(
    name="runtime-credentials",
    handler=handle,
    auth=NodeSecretPolicy(),
    methods=("GET", "POST"),
    body=Body,
    query=Lookup,
    summary="Decrypted credentials of a live activation, for the n8n node running it",
    rate_limit=(6000, 60),  # every execution of every workflow on a node may ask
)
