"""Reaching n8n nodes: a node's secrets from where they are named (`env:NAME` or
`vault:NAME`), the fallback node (N8N_BASE_URL with N8N_API_KEY and N8N_RUNTIME_SECRET),
clients for a node, finding which node a runtime secret belongs to, and the health check
the worker runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aerelion.auth import AuthContext, NoPolicy, Principal, auth_required, same_secret
from aerelion.config import Settings
from aerelion.errors import ApiError
from aerelion.n8n_client import N8nClient, origin_of
from aerelion.transactions import Database, Transaction

logger = logging.getLogger("aerelion.n8n")

FALLBACK_URL = "N8N_BASE_URL"
FALLBACK_KEY = "N8N_API_KEY"
FALLBACK_RUNTIME_SECRET = "N8N_RUNTIME_SECRET"  # noqa: S105 - a variable name


class NodeSecretPolicy(NoPolicy):
    """runtime-credentials' policy: the caller is an n8n node presenting its runtime
    secret as Bearer. Which node it is (every node names its own secret) is decided by the
    handler through `node_of_runtime_secret`, in constant time; here only a Bearer is
    demanded. No JWT: `verify_jwt = false`."""

    name = "secret:n8n-node-runtime-secret"

    async def authenticate(self, ctx: AuthContext) -> Principal:
        if ctx.bearer() is None:
            raise auth_required()
        return Principal("secret")


class NodeUnavailable(Exception):
    """The node cannot be reached: no URL, or its API key is not where it is named."""


@dataclass(frozen=True)
class NodeTarget:
    """A node as the lifecycle uses it (id None: the fallback node)."""

    id: uuid.UUID | None
    url: str
    api_key: str
    fallback: bool

    @property
    def label(self) -> str:
        return "the fallback node" if self.fallback else f"node {self.url}"


async def resolve_secret(tx: Transaction, settings: Settings, reference: str | None) -> str | None:
    """The value behind `env:NAME` (the environment) or `vault:NAME` (Supabase Vault)."""
    if not reference:
        return None
    kind, _, name = reference.partition(":")
    if kind == "env":
        return settings.get(name)
    if kind == "vault":
        return await tx.value("n8n_vault_secret", {"reference": reference})
    return None


async def node_target(tx: Transaction, settings: Settings, node: Mapping[str, Any]) -> NodeTarget:
    """The target for a node as SQL describes it (`n8n_mapping_node()`)."""
    if node.get("fallback") or node.get("id") is None:
        url = node.get("base_url") or settings.get(FALLBACK_URL)
        key = settings.get(FALLBACK_KEY)
        if not url or not key:
            raise NodeUnavailable(f"the fallback node needs {FALLBACK_URL} and {FALLBACK_KEY}")
        return NodeTarget(None, origin_of(url), key, True)
    key = await resolve_secret(tx, settings, node.get("api_key_secret"))
    if not key:
        raise NodeUnavailable(
            f"the API key of node {node.get('url')} is not configured"
            f" ({node.get('api_key_secret') or 'no api_key_secret'})"
        )
    return NodeTarget(uuid.UUID(str(node["id"])), origin_of(str(node["url"])), key, False)


async def reachable_target(
    tx: Transaction, settings: Settings, node: Mapping[str, Any]
) -> NodeTarget:
    """`node_target`, or 503 N8N_NOT_CONFIGURED for the caller when it cannot be reached."""
    try:
        return await node_target(tx, settings, node)
    except NodeUnavailable as error:
        raise ApiError(503, "N8N_NOT_CONFIGURED", str(error)) from None


def fallback_configured(settings: Settings) -> bool:
    return bool(settings.get(FALLBACK_URL) and settings.get(FALLBACK_KEY))


def client(target: NodeTarget, timeout: float = 20.0) -> N8nClient:
    return N8nClient(target.url, target.api_key, timeout=timeout)


async def node_of_runtime_secret(
    database: Database, settings: Settings, presented: str | None
) -> tuple[uuid.UUID | None, bool]:
    """(node id, is the fallback) whose runtime secret was presented; 401 otherwise. Every
    configured secret is compared, in constant time, whatever matched first."""
    if not presented:
        raise ApiError(
            401, "auth_required", "Missing authorization", headers={"www-authenticate": "Bearer"}
        )
    found: tuple[uuid.UUID | None, bool] | None = None
    async with database.as_service() as tx:
        rows = await tx.all("n8n_runtime_secrets")
        for row in rows:
            secret = await resolve_secret(tx, settings, row["runtime_secret"])
            if secret and same_secret(presented, secret) and found is None:
                found = (row["id"], False)
    fallback = settings.get(FALLBACK_RUNTIME_SECRET)
    if fallback and same_secret(presented, fallback) and found is None:
        found = (None, True)
    if found is None:
        raise ApiError(401, "invalid_credentials", "Invalid authorization")
    return found


# -- health ------------------------------------------------------------------------------


async def ping(database: Database, settings: Settings, node: Mapping[str, Any]) -> dict[str, Any]:
    """Ask one node whether it is ready (`/rest/settings` JSON) and record the answer."""
    ok, error = False, None
    try:
        async with N8nClient(str(node["instance_url"]), "readiness", timeout=5.0) as n8n:
            ok = await n8n.ready()
        if not ok:
            error = "not ready: /rest/settings did not answer JSON"
    except Exception as exc:  # a bad URL is an unhealthy node, not a crashed worker
        error = f"{type(exc).__name__}"
    async with database.as_service() as tx:
        row = await tx.one("record_n8n_ping", {"instance_id": node["id"], "ok": ok, "error": error})
    return {
        "id": node["id"],
        "url": node["instance_url"],
        "ok": ok,
        "error": error,
        "status": row["status"] if row else None,
    }


async def ping_all(database: Database, settings: Settings) -> list[dict[str, Any]]:
    async with database.as_service() as tx:
        nodes = await tx.all("n8n_instances_to_ping")
    return list(await asyncio.gather(*(ping(database, settings, n) for n in nodes)))


async def health_loop(database: Database, settings: Settings, stop: asyncio.Event) -> None:
    """The worker's readiness checks, every `n8n/ping_interval_s`, until `stop`."""
    while not stop.is_set():
        interval = 30.0
        try:
            async with database.as_service() as tx:
                nodes = await tx.all("n8n_instances_to_ping")
            if nodes:
                interval = float(nodes[0]["ping_interval_s"] or 30)
                await asyncio.gather(*(ping(database, settings, n) for n in nodes))
        except Exception as error:  # the next round tries again
            logger.warning("n8n health check failed: %s", type(error).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(interval, 1.0))
