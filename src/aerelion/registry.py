"""Runtime settings kept in `system_registry`, where an environment variable, when set,
wins (the rule everywhere: the environment overrides the registry)."""

from __future__ import annotations

from aerelion.config import Settings
from aerelion.transactions import Transaction

# Registry entries an environment variable may override.
ENVIRONMENT_OVERRIDES: dict[tuple[str, str], str] = {
    ("app", "functions_url"): "AERELION_PUBLIC_URL",
    ("hostinger", "api_base"): "HOSTINGER_API_BASE",
}


async def registry_value(
    tx: Transaction, settings: Settings, namespace: str, key: str
) -> str | None:
    """The setting: its environment variable if set, else the registry's value."""
    variable = ENVIRONMENT_OVERRIDES.get((namespace, key))
    if variable is not None:
        configured = settings.get(variable)
        if configured is not None:
            return configured
    return await tx.value("registry_get", {"namespace": namespace, "key": key})
