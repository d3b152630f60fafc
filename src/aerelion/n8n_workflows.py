"""Turning a template into a client's copy, as n8n's public API accepts it.

* The copy is built from `{name, nodes, connections, settings}` only, each node from the
  fields n8n's node schema allows and the settings from its allowed keys: read-only and
  unknown fields (`id`, `active`, `tags`, `pinData`, `meta`, `versionId`, ...) make n8n
  answer 400, so a template exported from an editor is never posted as it is.
* Every webhook node's path becomes `aerelion/{activation_request_id}`. The template's
  `webhookId` is dropped — copies of one template must not share it — and each webhook node
  gets a new one, derived from the activation and the node: without any webhookId n8n
  serves the node under `<workflow id>/<node name>/<path>`, with one it serves exactly the
  path, so the webhook URL stays `<node>/webhook/aerelion/{activation_request_id}`.
* Credentials of the template point at another instance: they are removed from the copy,
  and the client's own (created from their connected integrations) are attached where the
  template's nodes used that credential type, or where the node type needs it.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

WEBHOOK_TYPE = "n8n-nodes-base.webhook"
NODE_FIELDS = (
    "id",
    "name",
    "type",
    "typeVersion",
    "position",
    "parameters",
    "credentials",
    "webhookId",
    "disabled",
    "notes",
    "notesInFlow",
    "executeOnce",
    "alwaysOutputData",
    "retryOnFail",
    "maxTries",
    "waitBetweenTries",
    "onError",
)
SETTINGS_KEYS = (
    "saveExecutionProgress",
    "saveManualExecutions",
    "saveDataErrorExecution",
    "saveDataSuccessExecution",
    "executionTimeout",
    "timezone",
    "executionOrder",
)
_WEBHOOK_NAMESPACE = uuid.UUID("6c1f7a52-9d0e-4f3a-8c55-2f1d0a6b7e31")


def webhook_path(activation_request_id: str) -> str:
    return f"aerelion/{activation_request_id}"


@dataclass(frozen=True)
class CredentialKind:
    """How a provider's connected credentials become an n8n credential."""

    n8n_type: str
    node_types: tuple[str, ...]  # node types (lower case, suffix match) that need it

    def data(self, provider: str, values: dict[str, Any]) -> dict[str, Any]:
        def pick(*names: str) -> str | None:
            for name in names:
                value = values.get(name)
                if isinstance(value, str) and value:
                    return value
            return None

        if self.n8n_type == "openAiApi":
            data: dict[str, Any] = {"apiKey": pick("apiKey", "api_key", "key", "token")}
            if pick("organizationId", "organization_id", "organization"):
                data["organizationId"] = pick("organizationId", "organization_id", "organization")
            data["header"] = False  # n8n's schema needs it said when no custom header is used
            return data
        if self.n8n_type == "telegramApi":
            return {"accessToken": pick("accessToken", "access_token", "bot_token", "token")}
        if self.n8n_type == "airtableTokenApi":
            return {"accessToken": pick("accessToken", "access_token", "token", "api_key")}
        # httpHeaderAuth: a generic API key sent in a header
        return {
            "name": pick("header_name", "headerName", "name") or "X-API-Key",
            "value": pick("header_value", "headerValue", "value", "api_key", "apiKey", "token"),
        }


KNOWN_KINDS: dict[str, CredentialKind] = {
    "openai": CredentialKind(
        "openAiApi", ("openai", "lmchatopenai", "embeddingsopenai", "openaiassistant")
    ),
    "telegram": CredentialKind("telegramApi", ("telegram", "telegramtrigger")),
    "airtable": CredentialKind("airtableTokenApi", ("airtable", "airtabletrigger")),
}
GENERIC = CredentialKind("httpHeaderAuth", ())
# Connected through OAuth: their n8n credential types need client ids and token data the
# activation cannot build yet.
OAUTH_PROVIDERS = frozenset(
    {
        "google",
        "gmail",
        "google_sheets",
        "google_calendar",
        "google_drive",
        "hubspot",
        "slack",
        "notion",
        "microsoft",
        "microsoft_teams",
    }
)


def credential_kind(provider: str) -> CredentialKind | None:
    """The kind for a provider; None for OAuth providers (not supported yet)."""
    if provider in OAUTH_PROVIDERS:
        return None
    return KNOWN_KINDS.get(provider, GENERIC)


def schema_problems(schema: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """What n8n's credential schema (`GET /credentials/schema/{type}`) would refuse."""
    problems = []
    properties = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if data.get(name) in (None, ""):
            problems.append(f"{name} is required")
    if schema.get("additionalProperties") is False:
        problems += [
            f"{name} is not a field of this credential" for name in data if name not in properties
        ]
    for name, value in data.items():
        expected = (properties.get(name) or {}).get("type")
        if value is None:
            problems.append(f"{name} has no value")
        elif expected == "string" and not isinstance(value, str):
            problems.append(f"{name} must be a string")
        elif expected == "boolean" and not isinstance(value, bool):
            problems.append(f"{name} must be true or false")
    return problems


def workflow_copy(
    template: dict[str, Any], name: str, activation_request_id: str
) -> dict[str, Any]:
    """The body to POST: whitelisted fields, webhook paths set, no template credentials."""
    nodes = []
    for raw in template.get("nodes") or []:
        if not isinstance(raw, dict):
            continue
        node = {key: copy.deepcopy(raw[key]) for key in NODE_FIELDS if key in raw}
        node.pop("credentials", None)
        node.pop("webhookId", None)
        if node.get("type") == WEBHOOK_TYPE:
            parameters = node.setdefault("parameters", {})
            parameters["path"] = webhook_path(activation_request_id)
            node["webhookId"] = str(
                uuid.uuid5(
                    _WEBHOOK_NAMESPACE,
                    f"{activation_request_id}/{node.get('id') or node.get('name')}",
                )
            )
        nodes.append(node)
    raw_settings = template.get("settings") if isinstance(template.get("settings"), dict) else {}
    settings = {key: raw_settings[key] for key in SETTINGS_KEYS if key in raw_settings}
    settings.update({"saveDataSuccessExecution": "all", "saveDataErrorExecution": "all"})
    connections = template.get("connections")
    return {
        "name": name[:128],
        "nodes": nodes,
        "connections": copy.deepcopy(connections) if isinstance(connections, dict) else {},
        "settings": settings,
    }


def template_credential_types(template: dict[str, Any]) -> dict[str, set[str]]:
    """Node name -> the credential types the template attached to it."""
    found: dict[str, set[str]] = {}
    for node in template.get("nodes") or []:
        if isinstance(node, dict) and isinstance(node.get("credentials"), dict):
            found[str(node.get("name"))] = set(node["credentials"])
    return found


def attach_credentials(
    workflow: dict[str, Any],
    template: dict[str, Any],
    created: dict[str, tuple[str, str]],
) -> dict[str, Any]:
    """`workflow` with the client's credentials (n8n type -> (id, name)) on every node that
    used that type in the template, or whose type needs it."""
    used = template_credential_types(template)
    by_type = {kind.n8n_type: kind for kind in KNOWN_KINDS.values()}
    attached = copy.deepcopy(workflow)
    for node in attached["nodes"]:
        node_type = str(node.get("type", "")).rsplit(".", 1)[-1].lower()
        wanted = {t for t in used.get(str(node.get("name")), set()) if t in created}
        for n8n_type in created:
            kind = by_type.get(n8n_type)
            if kind is not None and node_type in kind.node_types:
                wanted.add(n8n_type)
        if wanted:
            node["credentials"] = {
                t: {"id": created[t][0], "name": created[t][1]} for t in sorted(wanted)
            }
    return attached


def webhook_url(base_url: str, workflow: dict[str, Any]) -> str | None:
    """The production URL of the copy's first webhook node (None without one)."""
    for node in workflow.get("nodes") or []:
        if node.get("type") != WEBHOOK_TYPE:
            continue
        path = str((node.get("parameters") or {}).get("path", "")).strip("/")
        if node.get("webhookId"):
            return f"{base_url}/webhook/{path}"
        name = str(node.get("name", "")).lower().replace(" ", "%20")
        return f"{base_url}/webhook/{workflow.get('id')}/{name}/{path}"
    return None
