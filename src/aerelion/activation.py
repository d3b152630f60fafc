"""The activation lifecycle on n8n: duplicate-and-activate, pause, resume, revoke and
retrigger, and the worker's jobs for them.

Every decision is an SQL function (`begin_n8n_activation`, `finish_n8n_lifecycle`, ...);
this module only carries them out on the node the mapping records, and never holds a
database transaction open while n8n answers. An activation that fails undoes what it
created on n8n (and records, before each step, what exists, so that a crashed attempt's
successor can clean it up); the capacity goes back when nothing is left.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import psycopg_pool

from aerelion import n8n_nodes
from aerelion.config import Settings
from aerelion.errors import ApiError
from aerelion.n8n_client import N8nClient, N8nError
from aerelion.n8n_nodes import NodeTarget, NodeUnavailable
from aerelion.n8n_workflows import (
    attach_credentials,
    credential_kind,
    schema_problems,
    webhook_url,
    workflow_copy,
)
from aerelion.queue import Claim, JobQueue
from aerelion.transactions import Database
from aerelion.vault import Context, Sealed, Vault, VaultError

logger = logging.getLogger("aerelion.activation")


class ActivationFailed(Exception):
    """A reason to give up this attempt (said to the client and the operators)."""


@dataclass(frozen=True)
class Lifecycle:
    """What the lifecycle needs: the database, settings (secrets, the fallback node) and
    the vault that opens the client's integration credentials (in memory only)."""

    database: Database
    settings: Settings
    vault: Vault | None

    # -- duplicate and activate ----------------------------------------------------

    async def activate(self, request_id: uuid.UUID, actor: uuid.UUID | None) -> dict[str, Any]:
        async with self.database.as_service() as tx:
            begun = await tx.value(
                "begin_n8n_activation", {"request_id": request_id, "actor": actor}
            )
        if begun["outcome"] == "already":
            return {
                "success": True,
                "message": "Already provisioned",
                "workflowId": begun["workflow_id"],
                "webhookUrl": begun["webhook_url"],
                "credentialIds": begun["credential_ids"],
            }
        attempt = _Attempt(self, begun)
        return await attempt.run()

    # -- pause, resume, revoke, retrigger -----------------------------------------

    async def act(
        self,
        request_id: uuid.UUID,
        actor: uuid.UUID | None,
        action: str,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        async with self.database.as_service() as tx:
            mapping = await tx.value(
                "begin_n8n_lifecycle", {"request_id": request_id, "actor": actor, "action": action}
            )
            target = await n8n_nodes.reachable_target(tx, self.settings, mapping["node"])
        workflow_id = mapping["workflow_ids"][0]
        try:
            async with n8n_nodes.client(target) as n8n:
                if action == "pause":
                    return await self._pause(n8n, mapping, actor, workflow_id)
                if action == "resume":
                    return await self._resume(n8n, mapping, actor, workflow_id)
                if action == "revoke":
                    return await self._revoke(n8n, mapping, actor, workflow_id)
                return await self._retrigger(n8n, mapping, actor, request_id, config)
        except N8nError as error:
            raise upstream_error(error) from None

    async def _finish(
        self, mapping: dict[str, Any], actor: uuid.UUID | None, action: str, details: dict
    ) -> dict[str, Any]:
        async with self.database.as_service() as tx:
            return (
                await tx.one(
                    "finish_n8n_lifecycle",
                    {
                        "mapping_id": mapping["mapping_id"],
                        "actor": actor,
                        "action": action,
                        "details": details,
                    },
                )
                or {}
            )

    async def _pause(
        self, n8n: N8nClient, mapping: dict, actor: uuid.UUID | None, wid: str
    ) -> dict:
        await n8n.deactivate_workflow(wid)
        verified = (await n8n.get_workflow(wid)).get("active") is False
        if not verified:
            raise ApiError(502, "N8N_ERROR", "n8n still reports the workflow active")
        await self._finish(mapping, actor, "pause", {"deactivation_verified": True})
        return {"success": True, "message": "Automation paused", "workflowId": wid}

    async def _resume(
        self, n8n: N8nClient, mapping: dict, actor: uuid.UUID | None, wid: str
    ) -> dict:
        await n8n.activate_workflow(wid)
        if (await n8n.get_workflow(wid)).get("active") is not True:
            raise ApiError(502, "N8N_ERROR", "n8n did not report the workflow active")
        await self._finish(mapping, actor, "resume", {})
        return {
            "success": True,
            "message": "Automation resumed",
            "workflowId": wid,
            "webhookUrl": mapping["webhook_url"],
        }

    async def _revoke(
        self, n8n: N8nClient, mapping: dict, actor: uuid.UUID | None, wid: str
    ) -> dict:
        attempted = verified = False
        for workflow_id in mapping["workflow_ids"]:
            attempted = True
            try:
                await n8n.deactivate_workflow(workflow_id)
                verified = (await n8n.get_workflow(workflow_id)).get("active") is False
            except N8nError as error:
                if error.status != 404:
                    raise
                verified = True  # already gone
            await n8n.delete_workflow(workflow_id)
        for credential_id in mapping["credential_ids"]:
            await n8n.delete_credential(credential_id)
        details = {
            "deactivation_attempted": attempted,
            "deactivation_verified": verified,
            "workflow_deleted": True,
            "credentials_deleted": len(mapping["credential_ids"]),
        }
        await self._finish(mapping, actor, "revoke", details)
        return {
            "success": True,
            "message": "Automation revoked and workflow deactivated",
            "workflowId": wid,
            **details,
        }

    async def _retrigger(
        self,
        n8n: N8nClient,
        mapping: dict,
        actor: uuid.UUID | None,
        request_id: uuid.UUID,
        config: dict[str, Any] | None,
    ) -> dict:
        url = mapping["webhook_url"]
        payload = {
            "activation_id": str(request_id),
            "config": config or {},
            "triggered_by": "retrigger",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await n8n.post_webhook(url, payload)
            status = response.status_code
            if not response.is_success:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ok = error is None
        await self._finish(
            mapping, actor, "retrigger", {"ok": ok, "status": status, "error": error}
        )
        return {
            "success": ok,
            "webhookUrl": url,
            "message": "Webhook triggered" if ok else f"Webhook call failed: {error}",
        }

    async def restart(self, request_id: uuid.UUID, actor: uuid.UUID | None) -> dict[str, Any]:
        """An operator's heal of a client's automation: deactivate and reactivate each of
        its workflows on its node and verify them active; recorded, logged and raised to
        the operators either way (`record_mapping_heal`). A workflow n8n no longer has is
        a failure: the client's copy holds their credentials, so it is revoked and
        activated again rather than recreated here."""
        async with self.database.as_service() as tx:
            mapping = await tx.value("n8n_mapping_heal_target", {"request_id": request_id})
            target = await n8n_nodes.reachable_target(tx, self.settings, mapping["node"])
        error = None
        try:
            async with n8n_nodes.client(target) as n8n:
                for workflow_id in mapping["workflow_ids"]:
                    await n8n.deactivate_workflow(workflow_id)
                    await n8n.activate_workflow(workflow_id)
                    if (await n8n.get_workflow(workflow_id)).get("active") is not True:
                        raise N8nError(
                            "n8n does not report the workflow active", operation="verify"
                        )
        except N8nError as failure:
            error = str(failure)
        async with self.database.as_service() as tx:
            recorded = await tx.value(
                "record_mapping_heal",
                {
                    "mapping_id": mapping["mapping_id"],
                    "ok": error is None,
                    "error": error,
                    "actor": actor,
                },
            )
        return {
            "success": error is None,
            "activation_request_id": str(request_id),
            "workflow_ids": mapping["workflow_ids"],
            "action": "restarted",
            "error": error,
            "notification_id": recorded["notification_id"],
        }

    # -- the worker's jobs ------------------------------------------------------------

    async def activate_job(self, claim: Claim, queue: JobQueue) -> str:
        """`activate_workflows`: the service activates for the request's owner."""
        request_id = claim.payload.get("activation_request_id") or claim.activation_request_id
        try:
            result = await self.activate(uuid.UUID(str(request_id)), None)
        except psycopg.Error as error:
            state = error.sqlstate or ""
            message = error.diag.message_primary or "refused"
            if state == "PT409" and "ACTIVATION_IN_PROGRESS" in message:
                return await queue.fail(claim, message, retryable=True)
            return await queue.fail(claim, message, retryable=False)
        except ApiError as error:
            return await queue.fail(claim, error.message, retryable=error.status >= 500)
        return await queue.complete(
            claim,
            {"workflow_id": result.get("workflowId"), "webhook_url": result.get("webhookUrl")},
        )

    async def pause_job(self, claim: Claim, queue: JobQueue) -> str:
        return await self._sync_job(claim, queue, want_active=False)

    async def resume_job(self, claim: Claim, queue: JobQueue) -> str:
        return await self._sync_job(claim, queue, want_active=True)

    async def _sync_job(self, claim: Claim, queue: JobQueue, *, want_active: bool) -> str:
        """Bring the workflows on n8n in line with the mapping billing changed: a job that
        finds the mapping changed again (paid meanwhile, revoked) does nothing."""
        async with self.database.as_service() as tx:
            mapping = await tx.value(
                "n8n_mapping_for_job", {"mapping_id": claim.payload.get("mapping_id")}
            )
            if mapping is None:
                return await queue.complete(claim, {"skipped": "no such mapping"})
            expected = "active" if want_active else "paused"
            if mapping["status"] != expected or not mapping["workflow_ids"]:
                return await queue.complete(claim, {"skipped": f"mapping is {mapping['status']}"})
            try:
                target = await n8n_nodes.node_target(tx, self.settings, mapping["node"])
            except NodeUnavailable as error:
                return await queue.fail(claim, str(error), retryable=True)
        try:
            async with n8n_nodes.client(target) as n8n:
                for workflow_id in mapping["workflow_ids"]:
                    if want_active:
                        await n8n.activate_workflow(workflow_id)
                    else:
                        await n8n.deactivate_workflow(workflow_id)
                    active = (await n8n.get_workflow(workflow_id)).get("active")
                    if active is not want_active:
                        return await queue.fail(claim, f"n8n reports active={active}")
        except N8nError as error:
            return await queue.fail(claim, str(error), retryable=error.retryable)
        return await queue.complete(
            claim, {"workflow_ids": mapping["workflow_ids"], "active": want_active}
        )


class _Attempt:
    """One activation attempt holding the mapping's claim."""

    def __init__(self, lifecycle: Lifecycle, begun: dict[str, Any]) -> None:
        self.lifecycle = lifecycle
        self.database = lifecycle.database
        self.begun = begun
        self.mapping_id = begun["mapping_id"]
        self.claim_id = begun["claim_id"]
        self.request_id = str(begun["activation_request_id"])
        self.workflow_ids: list[str] = list(begun["leftovers"]["workflow_ids"])
        self.credential_ids: list[str] = list(begun["leftovers"]["credential_ids"])
        self.target: NodeTarget | None = None

    async def run(self) -> dict[str, Any]:
        try:
            async with self.database.as_service() as tx:
                self.target = await n8n_nodes.node_target(
                    tx, self.lifecycle.settings, self.begun["node"]
                )
        except NodeUnavailable as error:
            await self._fail(f"no n8n node is available: {error}", cleaned=True)
            raise ApiError(503, "N8N_UNAVAILABLE", f"No n8n node is available: {error}") from None
        async with n8n_nodes.client(self.target) as n8n:
            try:
                result = await self._build(n8n)
            except (N8nError, ActivationFailed, VaultError) as error:
                reason = _reason(error)
                cleaned = await self._rollback(n8n)
                await self._fail(reason, cleaned=cleaned)
                raise ApiError(
                    502,
                    "ACTIVATION_FAILED",
                    reason,
                    hint="nothing was left on n8n"
                    if cleaned
                    else "cleanup of the n8n resources is pending",
                ) from None
            except (psycopg.Error, psycopg_pool.PoolTimeout):
                # the database failed mid-way (overload, restart): undo what n8n holds and
                # give the claim back if the database answers again; else the claim's lease
                # expires and the next attempt removes whatever is still recorded
                cleaned = await self._rollback(n8n)
                with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                    await self._fail("the database failed during the activation", cleaned=cleaned)
                raise
        return result

    async def _build(self, n8n: N8nClient) -> dict[str, Any]:
        assert self.target is not None
        left = self.workflow_ids or self.credential_ids  # what a crashed attempt left
        if left and not await self._rollback(n8n):
            raise ActivationFailed("could not remove what an earlier attempt left on n8n")
        template = self.begun["template"]["workflow"]
        plans = await self._credential_plans(n8n)
        name = (
            f"[{self.begun['client_label']}] {self.begun['template']['name']}"
            f" - {self.request_id[:8]}"
        )
        body = workflow_copy(template, name, self.request_id)
        try:
            created = await n8n.create_workflow(body)
        except N8nError as error:
            if error.outcome_unknown:
                await self._forget_unknown(n8n, name)
            raise
        self.workflow_ids = [str(created["id"])]
        await self._record()
        attached: dict[str, tuple[str, str]] = {}
        for provider, n8n_type, data in plans:
            credential_name = f"[{self.begun['client_label']}] {provider} - {self.request_id[:8]}"
            credential = await n8n.create_credential(credential_name, n8n_type, data)
            self.credential_ids.append(str(credential["id"]))
            await self._record()
            attached[n8n_type] = (str(credential["id"]), credential_name)
        full = attach_credentials(body, template, attached)
        workflow_id = self.workflow_ids[0]
        await n8n.update_workflow(workflow_id, full)
        await n8n.activate_workflow(workflow_id)
        if (await n8n.get_workflow(workflow_id)).get("active") is not True:
            raise ActivationFailed("n8n did not report the workflow active")
        url = webhook_url(self.target.url, {**full, "id": workflow_id})
        async with self.database.as_service() as tx:
            await tx.one(
                "finish_n8n_activation",
                {
                    "mapping_id": self.mapping_id,
                    "claim_id": self.claim_id,
                    "base_url": self.target.url,
                    "workflow_id": workflow_id,
                    "credential_ids": self.credential_ids,
                    "webhook_url": url,
                },
            )
        return {
            "success": True,
            "message": "Automation activated successfully",
            "workflowId": workflow_id,
            "webhookUrl": url,
            "credentialIds": self.credential_ids,
            "node": self.target.url,
            "fallback": self.target.fallback,
        }

    async def _credential_plans(self, n8n: N8nClient) -> list[tuple[str, str, dict]]:
        """Every credential to create, decrypted (in memory only) and checked against the
        node's schema for its type before anything is created."""
        vault = self.lifecycle.vault
        plans = []
        for integration in self.begun["integrations"]:
            provider = integration["provider"]
            kind = credential_kind(provider)
            if kind is None:
                raise ActivationFailed(f"{provider} connects through OAuth, not supported yet")
            if vault is None:
                raise ActivationFailed("credential encryption is not configured")
            values = vault.open_json(
                Sealed(
                    integration["ciphertext"],
                    integration["iv"],
                    integration["tag"],
                    integration["key_version"],
                ),
                Context("integration_connections", "encrypted_payload", str(integration["id"])),
            )
            if not isinstance(values, dict):
                raise ActivationFailed(f"the {provider} credentials are not a key/value map")
            data = kind.data(provider, values)
            problems = schema_problems(await n8n.credential_schema(kind.n8n_type), data)
            if problems:
                raise ActivationFailed(
                    f"the {provider} credentials do not fit n8n's {kind.n8n_type}: "
                    + "; ".join(problems)
                )
            plans.append((provider, kind.n8n_type, data))
        return plans

    async def _record(self) -> None:
        assert self.target is not None
        async with self.database.as_service() as tx:
            await tx.run(
                "record_n8n_resources",
                {
                    "mapping_id": self.mapping_id,
                    "claim_id": self.claim_id,
                    "base_url": self.target.url,
                    "workflow_ids": self.workflow_ids,
                    "credential_ids": self.credential_ids,
                },
            )

    async def _forget_unknown(self, n8n: N8nClient, name: str) -> None:
        """A create whose reply was lost may have happened: find it by its unique name."""
        try:
            found = await n8n.find_workflows(name)
        except N8nError:
            return
        self.workflow_ids = [str(w["id"]) for w in found]
        if self.workflow_ids:
            await self._record()

    async def _rollback(self, n8n: N8nClient) -> bool:
        """Delete what this attempt (or a crashed one) created; True when nothing is left."""
        left_workflows, left_credentials = [], []
        for workflow_id in self.workflow_ids:
            try:
                await n8n.delete_workflow(workflow_id)
            except N8nError:
                left_workflows.append(workflow_id)
        for credential_id in self.credential_ids:
            try:
                await n8n.delete_credential(credential_id)
            except N8nError:
                left_credentials.append(credential_id)
        self.workflow_ids, self.credential_ids = left_workflows, left_credentials
        try:
            await self._record()
        except (psycopg.Error, psycopg_pool.PoolTimeout):
            logger.warning("activation %s: could not record the cleanup", self.mapping_id)
        return not left_workflows and not left_credentials

    async def _fail(self, reason: str, *, cleaned: bool) -> None:
        async with self.database.as_service() as tx:
            await tx.one(
                "fail_n8n_activation",
                {
                    "mapping_id": self.mapping_id,
                    "claim_id": self.claim_id,
                    "reason": reason,
                    "cleaned": cleaned,
                },
            )


def _reason(error: Exception) -> str:
    if isinstance(error, N8nError):
        return f"n8n refused ({error.operation}): {error.message}" if error.status else str(error)
    if isinstance(error, VaultError):
        return "the client's integration credentials could not be opened"
    return str(error)


def upstream_error(error: N8nError) -> ApiError:
    """An n8n failure as the client sees it (never the API key)."""
    if error.status == 429 or (error.status or 0) >= 500 or error.status is None:
        return ApiError(
            502,
            "N8N_UNAVAILABLE",
            f"n8n did not answer ({error.operation})",
            headers={"Retry-After": "5"},
        )
    return ApiError(502, "N8N_ERROR", f"n8n refused ({error.operation}): {error.message}")


def lifecycle_for(database: Database, settings: Settings) -> Lifecycle:
    return Lifecycle(database, settings, Vault.from_environ(settings.environ))
