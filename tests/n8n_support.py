"""What the n8n mesh tests share: templates, clients who bought an automation (their
activation request and a connected OpenAI integration, sealed as connect-integration seals
it), and the settings of an app that reaches a pool of nodes."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from aerelion import local_identity
from aerelion.vault import Context, Vault
from support import JWT_SECRET, RUNTIME_SECRETS, SERVICE_KEY, settings_for

KEY = base64.b64encode(b"n" * 32).decode()
VAULT = Vault.from_environ({"CREDENTIAL_ENCRYPTION_KEY": KEY})
SERVICE = {"apikey": SERVICE_KEY}


def template(name: str = "Lead router", *, extra_nodes: list[dict] | None = None) -> dict:
    """An exported workflow: a webhook (a fixed path and webhookId, as the editor leaves
    them), an OpenAI node with the template author's credential, and fields n8n's public
    API refuses (id, active, tags, pinData, meta, versionId)."""
    nodes = [
        {
            "id": "b0c6d1a0-0000-4000-8000-000000000001",
            "name": "Webhook",
            "type": "n8n-nodes-base.webhook",
            "typeVersion": 2,
            "position": [0, 0],
            "webhookId": "5f1c0e4e-0000-4000-8000-00000000abcd",
            "parameters": {
                "path": "template-path",
                "httpMethod": "POST",
                "responseMode": "onReceived",
            },
        },
        {
            "id": "b0c6d1a0-0000-4000-8000-000000000002",
            "name": "OpenAI",
            "type": "n8n-nodes-base.openAi",
            "typeVersion": 1.1,
            "position": [220, 0],
            "parameters": {},
            "credentials": {"openAiApi": {"id": "author-cred", "name": "Author's key"}},
        },
        *(extra_nodes or []),
    ]
    return {
        "id": "TemplateWf01",
        "name": name,
        "active": True,
        "tags": [{"name": "sales"}],
        "pinData": {},
        "meta": {"instanceId": "abc"},
        "versionId": "v-1",
        "nodes": nodes,
        "connections": {"Webhook": {"main": [[{"node": "OpenAI", "type": "main", "index": 0}]]}},
        "settings": {"executionOrder": "v1", "errorWorkflow": "elsewhere", "unknownKey": 1},
    }


def node_settings(
    nodes: dict[str, tuple[str, str]], fallback: tuple[str, str] | None, **extra: str
):
    """Settings naming each node's API key and runtime secret in the environment
    (`N8N_KEY_<NAME>`, `N8N_RUNTIME_<NAME>`), the fallback node as N8N_BASE_URL."""
    environ = {**RUNTIME_SECRETS, "CREDENTIAL_ENCRYPTION_KEY": KEY}
    for name, (api_key, runtime) in nodes.items():
        environ[f"N8N_KEY_{name}"] = api_key
        environ[f"N8N_RUNTIME_{name}"] = runtime
    if fallback is not None:
        environ.update(
            {
                "N8N_BASE_URL": fallback[0],
                "N8N_API_KEY": fallback[1],
                "N8N_RUNTIME_SECRET": f"fallback-runtime-{uuid.uuid4().hex}",
            }
        )
    environ.update(extra)
    return settings_for(**environ)


def add_node(conn: psycopg.Connection, url: str, name: str, capacity: int) -> uuid.UUID:
    row = conn.execute(
        "insert into public.n8n_instances (instance_url, label, max_capacity, api_key_secret,"
        " runtime_secret) values (%s, %s, %s, %s, %s) returning id",
        [url, name, capacity, f"env:N8N_KEY_{name}", f"env:N8N_RUNTIME_{name}"],
    ).fetchone()
    return row["id"] if isinstance(row, dict) else row[0]


def import_automation(conn: psycopg.Connection, workflow: dict, slug: str) -> uuid.UUID:
    """The catalog entry and its template, as admin-import-workflows makes them, published."""
    with conn.transaction():
        conn.execute(
            "select set_config('role', 'service_role', true),"
            " set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true)"
        )
        row = conn.execute(
            "select automation_agent_id from public.import_automation_workflow(%s, %s, %s)",
            [json.dumps(workflow), f"{slug}.json", slug],
        ).fetchone()
    agent_id = row["automation_agent_id"] if isinstance(row, dict) else row[0]
    conn.execute(
        "update public.automation_agents set status = 'published', price_cents = 4900"
        " where id = %s",
        [agent_id],
    )
    return agent_id


@dataclass(frozen=True)
class Client:
    user_id: uuid.UUID
    email: str
    request_id: uuid.UUID

    def headers(self) -> dict[str, str]:
        claims = local_identity.user_claims(self.user_id, self.email)
        return {"authorization": f"Bearer {local_identity.sign(claims, JWT_SECRET)}"}


def new_client(
    conn: psycopg.Connection,
    agent_id: uuid.UUID,
    *,
    bought: bool = True,
    openai_key: str | None = "sk-client-secret",
    admin: bool = False,
) -> Client:
    """A user, their activation request for the agent, a purchase of it (unless not
    `bought`), and their OpenAI integration connected (sealed to its row)."""
    email = f"client-{uuid.uuid4().hex[:10]}@example.com"
    user_id = local_identity.create_user(conn, email, admin=admin)
    row = conn.execute(
        "insert into public.installation_requests (name, email, company, user_id, automation_id)"
        " values ('Client', %s, 'Acme', %s, %s) returning id",
        [email, user_id, agent_id],
    ).fetchone()
    request_id = row["id"] if isinstance(row, dict) else row[0]
    if bought:
        conn.execute(
            "insert into public.purchases (email, item_type, item_id, amount_cents, status,"
            " user_id) values (%s, 'agent', %s, 4900, 'completed', %s)",
            [email, agent_id, user_id],
        )
        # a tier with room for live activations (The Ghost: unlimited)
        conn.execute(
            "insert into public.purchases (email, item_type, tier, amount_cents, status, user_id)"
            " values (%s, 'tier', 'ghost', 2500000, 'completed', %s)",
            [email, user_id],
        )
    if openai_key is not None:
        connect(conn, user_id, "openai", {"api_key": openai_key})
    return Client(user_id, email, request_id)


def connect(conn: psycopg.Connection, user_id: uuid.UUID, provider: str, values: dict) -> None:
    row_id = uuid.uuid4()
    sealed = VAULT.seal_json(
        values, Context("integration_connections", "encrypted_payload", str(row_id))
    )
    conn.execute(
        "insert into public.integration_connections (id, user_id, provider, status,"
        " encrypted_payload, encryption_iv, encryption_tag, key_version)"
        " values (%s, %s, %s, 'connected', %s, %s, %s, %s)",
        [row_id, user_id, provider, sealed.ciphertext, sealed.iv, sealed.tag, sealed.key_version],
    )


def mapping(conn: psycopg.Connection, request_id: uuid.UUID) -> dict[str, Any] | None:
    return conn.execute(
        "select * from public.n8n_mappings where activation_request_id = %s"
        " order by created_at desc limit 1",
        [request_id],
    ).fetchone()


def loads(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    return {
        row["label"]: (row["current_load"], row["max_capacity"])
        for row in conn.execute(
            "select label, current_load, max_capacity from public.n8n_instances"
        )
    }
