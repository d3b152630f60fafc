"""What a client does with a provisioned server, shared by `vps-orchestrator`,
`hostinger-metrics` and `hostinger-credentials`.

Every check (ownership, status, rate limits, the metrics cache and its lease, the
one-time view) is an SQL function run as the caller; this module only calls Hostinger in
between and stores what it answered, as the service role. Nothing here holds a database
transaction open across a call to Hostinger, except a credential view, whose decryption
must succeed for the view to count.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aerelion.credentials import require_vault
from aerelion.errors import ApiError
from aerelion.functions import Call
from aerelion.hostinger import HostingerError
from aerelion.hostinger_access import require_hostinger, upstream_error
from aerelion.provisioning import N8N_COLUMN, SSH_COLUMN, new_ssh_key_pair, strong_password
from aerelion.vault import Context, Sealed, VaultError
from aerelion.vps_metrics import WINDOW_S, vitality

METRICS_WAIT_S = 5.0  # how long a caller waits for another caller's fetch
METRICS_POLL_S = 0.1


# -- metrics ------------------------------------------------------------------------------


async def metrics(call: Call[Any], instance_id: uuid.UUID) -> dict[str, Any]:
    """The instance's vitality: cached for hostinger/metrics_cache_s, fetched by one caller
    at a time; the others wait for that fetch (or get the previous sample)."""
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        async with call.as_caller() as db:
            row = await db.one("begin_vps_metrics", {"instance_id": instance_id})
        assert row is not None
        if row["state"] == "refresh":
            return await _refresh_metrics(call, row)
        if row["state"] == "fresh":
            return _vitality_of(row, cached=True)
        if time.monotonic() >= deadline:
            if row["vitality"] is not None:
                return _vitality_of(row, cached=True, stale=True)
            raise ApiError(
                503,
                "METRICS_PENDING",
                "METRICS_PENDING: the first sample is still being fetched",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(METRICS_POLL_S)


def _vitality_of(row: dict[str, Any], *, cached: bool, stale: bool = False) -> dict[str, Any]:
    result = {**row["vitality"], "status": row["status"], "cached": cached}
    if stale:
        result["stale"] = True
    return result


async def _refresh_metrics(call: Call[Any], row: dict[str, Any]) -> dict[str, Any]:
    lease = {"instance_id": row["instance_id"], "refresh_token": row["refresh_token"]}
    try:
        connect = require_hostinger(call.settings, call.database)
        vm_id = int(row["virtual_machine_id"])
        sizes: dict[str, int | None] = {"cpus": None, "memory_mb": None, "disk_mb": None}
        async with connect() as hostinger:
            if row["memory_mb"] is None or row["disk_mb"] is None:  # read once, then kept
                vm = await hostinger.get_virtual_machine(vm_id)
                sizes = {"cpus": vm.cpus, "memory_mb": vm.memory_mb, "disk_mb": vm.disk_mb}
            now = datetime.now(UTC)
            collection = await hostinger.get_metrics(vm_id, now - timedelta(seconds=WINDOW_S), now)
    except Exception as error:
        async with call.as_service() as db:
            await db.run("release_vps_metrics", lease)
        if isinstance(error, HostingerError):
            raise upstream_error(error) from None
        raise
    vitals = vitality(
        collection,
        memory_mb=sizes["memory_mb"] or row["memory_mb"],
        disk_mb=sizes["disk_mb"] or row["disk_mb"],
    )
    async with call.as_service() as db:
        await db.value("store_vps_metrics", {**lease, "vitality": vitals, **sizes})
    return {**vitals, "status": row["status"], "cached": False}


# -- reboot ---------------------------------------------------------------------------------


async def reboot(call: Call[Any], instance_id: uuid.UUID) -> dict[str, Any]:
    """Restart through the API; the instance shows `rebooting` until the worker sees the
    VM running again. A refused restart leaves it `active` and is not counted."""
    connect = require_hostinger(call.settings, call.database)
    async with call.as_caller() as db:
        row = await db.one("begin_vps_reboot", {"instance_id": instance_id})
    assert row is not None
    try:
        async with connect() as hostinger:
            action = await hostinger.restart_virtual_machine(int(row["virtual_machine_id"]))
    except Exception as error:
        async with call.as_service() as db:
            await db.run(
                "abort_vps_reboot",
                {
                    "instance_id": instance_id,
                    "user_id": call.principal.user_id,
                    "error": str(error)[:500],
                },
            )
        if isinstance(error, HostingerError):
            raise upstream_error(error) from None
        raise
    async with call.as_service() as db:
        job_id = await db.value(
            "record_vps_reboot", {"instance_id": instance_id, "action_id": action.get("id")}
        )
    return {"success": True, "status": "rebooting", "reboot": action, "watch_job_id": job_id}


# -- credentials ----------------------------------------------------------------------------


async def view_credentials(call: Call[Any], instance_id: uuid.UUID) -> dict[str, Any]:
    """One view of the instance's credentials (see `view_vps_credentials`). The values are
    opened inside the view's transaction: a view that cannot be decrypted is not spent."""
    vault = require_vault(call.settings)
    async with call.as_caller() as db:
        row = await db.one("view_vps_credentials", {"instance_id": instance_id})
        assert row is not None
        try:
            ssh = _open(vault, row, "ssh", SSH_COLUMN)
            n8n = _open(vault, row, "n8n", N8N_COLUMN)
        except VaultError:
            raise ApiError(
                500, "decryption_failed", "The stored credentials could not be decrypted"
            ) from None
    result: dict[str, Any] = {
        "success": True,
        "first_view": row["first_view"],
        "admin_read": row["admin_read"],
        "instance_id": row["instance_id"],
        "ip_address": row["ip_address"],
        "hostname": row["hostname"],
        "viewed_at": row["viewed_at"],
        "ssh": None,
        "n8n": None,
    }
    if ssh is not None:
        result["ssh"] = {
            "private_key": ssh.get("private_key"),
            "public_key": ssh.get("public_key"),
            "root_password": ssh.get("root_password"),
        }
    if n8n is not None:
        result["n8n"] = {
            "url": row["n8n_instance_url"],
            "username": n8n.get("username"),
            "password": n8n.get("password"),
        }
    if ssh is None and n8n is None:
        result["message"] = (
            "CREDENTIALS_ALREADY_VIEWED: rotate the credentials to view new ones once"
        )
    return result


def _open(vault: Any, row: dict[str, Any], prefix: str, column: str) -> dict[str, Any] | None:
    if row[f"{prefix}_ciphertext"] is None:
        return None
    sealed = Sealed(
        row[f"{prefix}_ciphertext"],
        row[f"{prefix}_iv"],
        row[f"{prefix}_tag"],
        row[f"{prefix}_key_version"],
    )
    return vault.open_json(sealed, Context("vps_instances", column, str(row["instance_id"])))


async def rotate_credentials(call: Call[Any], instance_id: uuid.UUID) -> dict[str, Any]:
    """A new root password and SSH key pair, pushed to the VM through the API (the
    password last: until it is set the old credentials keep working), then stored sealed;
    one view re-opens. If anything fails, rotating again is safe."""
    vault = require_vault(call.settings)
    connect = require_hostinger(call.settings, call.database)
    async with call.as_caller() as db:
        row = await db.one("begin_vps_credential_rotation", {"instance_id": instance_id})
    assert row is not None
    hostname = row["hostname"] or f"aerelion-{instance_id}"
    password = strong_password()
    private_key, public_key = new_ssh_key_pair(hostname)
    vm_id = int(row["virtual_machine_id"])
    key_name = f"{hostname}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    async with connect() as hostinger:
        try:
            key_id = await hostinger.create_public_key(key_name, public_key)
            await hostinger.attach_public_keys(vm_id, [key_id])
            await hostinger.set_root_password(vm_id, password)
        except HostingerError as error:
            raise upstream_error(error) from None
        sealed = vault.seal_json(
            {
                "root_password": password,
                "private_key": private_key,
                "public_key": public_key,
                "public_key_id": key_id,
            },
            Context("vps_instances", SSH_COLUMN, str(instance_id)),
        )
        async with call.as_service() as db:
            rotated_at = await db.value(
                "store_rotated_vps_credentials",
                {
                    "instance_id": instance_id,
                    "user_id": call.principal.user_id,
                    "ciphertext": sealed.ciphertext,
                    "iv": sealed.iv,
                    "tag": sealed.tag,
                    "key_version": sealed.key_version,
                    "public_key_id": key_id,
                },
            )
        previous = row["previous_public_key_id"]
        if previous is not None and previous != key_id:
            try:  # the old key leaves the account; a failure only leaves it registered
                await hostinger.delete_public_key(previous)
            except HostingerError:
                call.note.details["stale_public_key_id"] = previous
    return {
        "success": True,
        "rotated_at": rotated_at,
        "message": "CREDENTIALS_ROTATED: the new credentials can be viewed once",
    }
