"""What the credential endpoints share: the configured vault (or a clear refusal), and
the size rules for credential maps clients send."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from aerelion.config import Settings
from aerelion.errors import ApiError
from aerelion.vault import Vault

CredentialKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]
CredentialValue = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
CredentialMap = Annotated[dict[CredentialKey, CredentialValue], Field(min_length=1, max_length=50)]


def require_vault(settings: Settings) -> Vault:
    """The vault, or 503 (fail closed) when no credential encryption key is configured."""
    vault = Vault.from_environ(settings.environ)
    if vault is None:
        raise ApiError(503, "not_configured", "Credential encryption is not configured")
    return vault
