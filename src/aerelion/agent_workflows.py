"""The Elite 7 on n8n: their heartbeat workflows deployed to the mesh, and healed.

* Deploying is idempotent: each agent's workflow is built deterministically (schedule
  every `heartbeat_interval_s` → POST `<functions_url>/agent-heartbeat`), compared with the
  definition last deployed and with what n8n reports, and only what differs is created,
  updated or activated. The heartbeat key is never inlined into workflow JSON: it lives in
  one `httpHeaderAuth` credential per node, recreated when HEARTBEAT_SECRET changes (a
  keyed fingerprint shows the change without revealing the key).
* Healing is real: the agent's workflow is deactivated and reactivated on its node, or
  redeployed from its recorded definition when n8n no longer has it, then verified
  active. SQL records the outcome, writes the log row and notifies the operators
  (`record_agent_heal`); the worker heals agents in DRIFT, ERROR or OFFLINE on its own
  (`claim_agent_heals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from aerelion import n8n_nodes
from aerelion.activation import upstream_error
from aerelion.config import Settings
from aerelion.errors import ApiError
from aerelion.n8n_client import N8nClient, N8nError
from aerelion.n8n_nodes import NodeTarget, NodeUnavailable
from aerelion.registry import registry_value
from aerelion.transactions import Database

logger = logging.getLogger("aerelion.agents")

HEARTBEAT_SECRET = "HEARTBEAT_SECRET"  # noqa: S105 - a variable name
HEARTBEAT_HEADER = "x-heartbeat-key"
CREDENTIAL_NAME = "AERELION heartbeat key"
_NODE_IDS = uuid.UUID("0b6a4a53-7c1e-4d8e-9f52-3a8d1c2e7f10")


def workflow_name(agent: dict[str, Any]) -> str:
    return f"AERELION_{agent['agent_id']}_{agent['module']}_HEARTBEAT"


def _schedule(seconds: int) -> dict[str, Any]:
    """n8n's Schedule Trigger interval for a heartbeat every `seconds`."""
    if seconds % 3600 == 0:
        return {"field": "hours", "hoursInterval": seconds // 3600}
    if seconds % 60 == 0:
        return {"field": "minutes", "minutesInterval": seconds // 60}
    return {"field": "seconds", "secondsInterval": seconds}


def heartbeat_workflow(
    agent: dict[str, Any], functions_url: str, credential_id: str
) -> dict[str, Any]:
    """The agent's workflow as the public API takes it: the same input, the same JSON."""
    agent_id = agent["agent_id"]
    # registry values enter the expression as JSON string literals, never as code
    literal = {"agent_id": json.dumps(agent_id), "module": json.dumps(agent["module"])}
    body = (
        f"={{{{ JSON.stringify({{ agent_id: {literal['agent_id']}, status: 'NOMINAL', "
        f"message: 'HEARTBEAT_CYCLE', metadata: {{ module: {literal['module']}, "
        "cycle_iso: $now.toISO(), source: 'n8n_cron' } }) }}"
    )
    schedule, beat = "Every heartbeat interval", "Send heartbeat"
    return {
        "name": workflow_name(agent),
        "nodes": [
            {
                "id": str(uuid.uuid5(_NODE_IDS, f"{agent_id}/schedule")),
                "name": schedule,
                "type": "n8n-nodes-base.scheduleTrigger",
                "typeVersion": 1.2,
                "position": [0, 0],
                "parameters": {
                    "rule": {"interval": [_schedule(int(agent["heartbeat_interval_s"]))]}
                },
            },
            {
                "id": str(uuid.uuid5(_NODE_IDS, f"{agent_id}/heartbeat")),
                "name": beat,
                "type": "n8n-nodes-base.httpRequest",
                "typeVersion": 4.2,
                "position": [240, 0],
                "parameters": {
                    "method": "POST",
                    "url": f"{functions_url.rstrip('/')}/agent-heartbeat",
                    "authentication": "genericCredentialType",
                    "genericAuthType": "httpHeaderAuth",
                    "sendBody": True,
                    "specifyBody": "json",
                    "jsonBody": body,
                    "options": {},
                },
                "credentials": {"httpHeaderAuth": {"id": credential_id, "name": CREDENTIAL_NAME}},
            },
        ],
        "connections": {schedule: {"main": [[{"node": beat, "type": "main", "index": 0}]]}},
        "settings": {"executionOrder": "v1"},
    }


def key_fingerprint(secret: str) -> str:
    """HMAC-SHA256 of a constant under the key: equal keys match, the key stays unknown."""
    return hmac.new(secret.encode(), b"aerelion heartbeat credential", hashlib.sha256).hexdigest()


async def _verified_active(n8n: N8nClient, workflow_id: str) -> None:
    if (await n8n.get_workflow(workflow_id)).get("active") is not True:
        raise N8nError("n8n does not report the workflow active", operation="verify")


async def _existing(n8n: N8nClient, workflow_id: str | None) -> dict[str, Any] | None:
    """The workflow as n8n has it, None when it is gone."""
    if not workflow_id:
        return None
    try:
        return await n8n.get_workflow(workflow_id)
    except N8nError as error:
        if error.status == 404:
            return None
        raise


async def _create_active(n8n: N8nClient, definition: dict[str, Any]) -> str:
    """Create (adopting a same-named copy an interrupted deploy left), activate, verify."""
    found = await n8n.find_workflows(definition["name"])
    if found:
        workflow_id = str(found[0]["id"])
        await n8n.update_workflow(workflow_id, definition)
    else:
        workflow_id = str((await n8n.create_workflow(definition))["id"])
    await n8n.activate_workflow(workflow_id)
    await _verified_active(n8n, workflow_id)
    return workflow_id


@dataclass(frozen=True)
class AgentWorkflows:
    database: Database
    settings: Settings

    # -- deploy ------------------------------------------------------------------------

    async def deploy(self, node: str | None, actor: uuid.UUID | None) -> dict[str, Any]:
        secret = self.settings.get(HEARTBEAT_SECRET)
        if not secret:
            raise ApiError(503, "NOT_CONFIGURED", "HEARTBEAT_SECRET is not set")
        async with self.database.as_service() as tx:
            plan = await tx.value("agent_deploy_plan", {"node": node})
            functions_url = await registry_value(tx, self.settings, "app", "functions_url")
            target = await n8n_nodes.reachable_target(tx, self.settings, plan["node"])
        if not functions_url:
            raise ApiError(503, "NOT_CONFIGURED", "app/functions_url is not set")
        fingerprint = key_fingerprint(secret)
        rows = [a["workflow"] for a in plan["agents"] if a["workflow"]]
        try:
            async with n8n_nodes.client(target) as n8n:
                credential_id = next(
                    (r["credential_id"] for r in rows if r["key_fingerprint"] == fingerprint),
                    None,
                )
                fresh = credential_id is None
                if credential_id is None:
                    data = {"name": HEARTBEAT_HEADER, "value": secret}
                    made = await n8n.create_credential(CREDENTIAL_NAME, "httpHeaderAuth", data)
                    credential_id = str(made["id"])
                results = [
                    await self._deploy_one(
                        n8n, target, agent, functions_url, credential_id, fingerprint, actor
                    )
                    for agent in plan["agents"]
                ]
                for agent, result in zip(plan["agents"], results, strict=True):
                    if result["outcome"] != "error" and agent["elsewhere"]:
                        result.update(
                            await self._leave(agent["agent_id"], agent["elsewhere"], actor)
                        )
                outcomes = {r["outcome"] for r in results}
                # old credentials go once nothing uses them; a new one nothing uses goes too
                unused = {r["credential_id"] for r in rows} - {credential_id, None}
                if "error" in outcomes:
                    unused = {credential_id} if fresh and outcomes == {"error"} else set()
                for stale in unused:
                    with contextlib.suppress(N8nError):
                        await n8n.delete_credential(stale)
        except N8nError as error:
            raise upstream_error(error) from None
        counts = {
            outcome: sum(r["outcome"] == outcome for r in results)
            for outcome in ("unchanged", "created", "updated", "activated", "redeployed", "error")
        }
        return {
            "node": target.url,
            "summary": {"total": len(results), **counts},
            "results": results,
        }

    async def _deploy_one(
        self,
        n8n: N8nClient,
        target: NodeTarget,
        agent: dict[str, Any],
        functions_url: str,
        credential_id: str,
        fingerprint: str,
        actor: uuid.UUID | None,
    ) -> dict[str, Any]:
        definition = heartbeat_workflow(agent, functions_url, credential_id)
        row = agent["workflow"] or {}
        workflow_id = row.get("workflow_id")
        result = {"agent_id": agent["agent_id"], "name": definition["name"]}
        try:
            current = await _existing(n8n, workflow_id)
            if current is None:
                outcome = "redeployed" if workflow_id else "created"
                workflow_id = await _create_active(n8n, definition)
            elif row.get("definition") != definition:
                outcome = "updated"
                await n8n.update_workflow(str(workflow_id), definition)
                await n8n.activate_workflow(str(workflow_id))
                await _verified_active(n8n, str(workflow_id))
            elif current.get("active") is not True:
                outcome = "activated"
                await n8n.activate_workflow(str(workflow_id))
                await _verified_active(n8n, str(workflow_id))
            else:
                return {**result, "workflow_id": workflow_id, "outcome": "unchanged"}
        except N8nError as error:
            return {**result, "workflow_id": workflow_id, "outcome": "error", "error": str(error)}
        await self._record(
            agent["agent_id"],
            target.id,
            {
                "workflow_id": workflow_id,
                "workflow_name": definition["name"],
                "definition": definition,
                "credential_id": credential_id,
                "key_fingerprint": fingerprint,
            },
            outcome,
            actor,
        )
        return {**result, "workflow_id": workflow_id, "outcome": outcome}

    async def _leave(
        self, agent_id: str, elsewhere: list[dict[str, Any]], actor: uuid.UUID | None
    ) -> dict[str, list[str]]:
        """Remove the agent's workflows from the nodes it no longer runs on (and a node's
        heartbeat credential with its last agent); what could not be removed stays recorded
        for the next deploy."""
        moved, left = [], []
        for old in elsewhere:
            try:
                async with self.database.as_service() as tx:
                    node = await n8n_nodes.node_target(tx, self.settings, old["node"])
                async with n8n_nodes.client(node) as n8n:
                    await n8n.delete_workflow(old["workflow_id"])
                    async with self.database.as_service() as tx:
                        still_used = await tx.value(
                            "forget_agent_workflow",
                            {"agent_id": agent_id, "instance_id": node.id, "actor": actor},
                        )
                    if not still_used and old["credential_id"]:
                        await n8n.delete_credential(old["credential_id"])
                moved.append(old["node"]["url"])
            except (N8nError, NodeUnavailable) as error:
                logger.warning("%s: could not leave %s: %s", agent_id, old["node"]["url"], error)
                left.append(old["node"]["url"])
        return {"moved_from": moved, **({"left_on": left} if left else {})}

    async def _record(
        self,
        agent_id: str,
        instance_id: uuid.UUID | None,
        workflow: dict[str, Any],
        outcome: str,
        actor: uuid.UUID | None,
    ) -> None:
        fields = ("workflow_id", "workflow_name", "definition", "credential_id", "key_fingerprint")
        async with self.database.as_service() as tx:
            await tx.one(
                "record_agent_workflow",
                {
                    "agent_id": agent_id,
                    "instance_id": instance_id,
                    **{field: workflow[field] for field in fields},
                    "outcome": outcome,
                    "actor": actor,
                },
            )

    # -- heal ------------------------------------------------------------------------------

    async def heal(self, agent_id: str, trigger: str, actor: uuid.UUID | None) -> dict[str, Any]:
        """Restart (or redeploy) every workflow of the agent and verify it; recorded in SQL
        whatever happens. `ok` is False when one of them could not be healed."""
        async with self.database.as_service() as tx:
            target = await tx.value("agent_heal_target", {"agent_id": agent_id})
        if not target["workflows"]:
            raise ApiError(
                409,
                "NOT_DEPLOYED",
                f"{agent_id} has no workflow on n8n",
                hint="deploy-agent-workflows deploys the agents' workflows",
            )
        actions = [await self._heal_one(target, w, trigger, actor) for w in target["workflows"]]
        return {
            "success": all(a["ok"] for a in actions),
            "agent_id": agent_id,
            "previous_state": target["state"],
            "actions": actions,
        }

    async def _heal_one(
        self, target: dict[str, Any], workflow: dict[str, Any], trigger: str, actor: Any
    ) -> dict[str, Any]:
        workflow_id = workflow["workflow_id"]
        action, error = "restarted", None
        try:
            async with self.database.as_service() as tx:
                node = await n8n_nodes.node_target(tx, self.settings, workflow["node"])
            async with n8n_nodes.client(node) as n8n:
                if await _existing(n8n, workflow_id) is None:
                    action = "redeployed"
                    if not workflow["definition"]:
                        raise N8nError("the workflow is gone and no definition is recorded")
                    workflow_id = await _create_active(n8n, workflow["definition"])
                    redeployed = {**workflow, "workflow_id": workflow_id}
                    await self._record(target["agent_id"], node.id, redeployed, "redeployed", actor)
                else:
                    await n8n.deactivate_workflow(workflow_id)
                    await n8n.activate_workflow(workflow_id)
                    await _verified_active(n8n, workflow_id)
        except (N8nError, NodeUnavailable) as failure:
            error = str(failure)
        async with self.database.as_service() as tx:
            recorded = await tx.value(
                "record_agent_heal",
                {
                    "agent_id": target["agent_id"],
                    "instance_id": workflow["n8n_instance_id"],
                    "previous_state": target["state"],
                    "action": action,
                    "ok": error is None,
                    "workflow_id": workflow_id,
                    "error": error,
                    "trigger": trigger,
                    "actor": actor,
                },
            )
        return {
            "ok": error is None,
            "action": action,
            "workflow_id": workflow_id,
            "n8n_instance_id": workflow["n8n_instance_id"],
            "error": error,
            "notification_id": recorded["notification_id"],
        }

    # -- the worker's loop -----------------------------------------------------------------

    async def heal_due(self) -> list[dict[str, Any]]:
        """Heal every agent `claim_agent_heals()` hands this worker."""
        async with self.database.as_service() as tx:
            due = await tx.all("claim_agent_heals")
        return [await self.heal(row["agent_id"], "worker", None) for row in due]

    async def heal_loop(self, stop: asyncio.Event) -> None:
        """Until `stop`: every `agents/heal_interval_s`, heal the agents that need it."""
        while not stop.is_set():
            interval = 60.0
            try:
                async with self.database.as_service() as tx:
                    interval = float(await tx.value("agent_heal_interval_s") or 60)
                for healed in await self.heal_due():
                    logger.info("auto-heal %s: success=%s", healed["agent_id"], healed["success"])
            except Exception as error:  # the next round tries again
                logger.warning("auto-heal round failed: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(interval, 1.0))
