"""The `provision_vps` job: buy a VPS at Hostinger exactly once and bring it up.

Steps (the job's `step`): `start` → the purchase → `wait_running` → done; or, when a
purchase's outcome is unknown (a timeout, a lost reply), `confirm_purchase` until the VM
shows up under its hostname — never a second purchase. The VM's hostname carries the job
id (`aerelion-<job id>`), so a retried or recovered job finds what an earlier attempt
bought. Hostinger returns no secrets: the root password, an Ed25519 key pair and the n8n
owner credentials are generated here and stored sealed (bound to the VPS row) before
anything is bought.
"""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from aerelion.hostinger import HostingerClient, HostingerError
from aerelion.hostinger_access import ClientFactory
from aerelion.queue import Claim, JobQueue
from aerelion.transactions import Database
from aerelion.vault import Context, Sealed, Vault

SSH_COLUMN = "encrypted_ssh_private_key"
N8N_COLUMN = "encrypted_n8n_credentials"
N8N_PORT = 5678


def hostname_for(job_id: uuid.UUID) -> str:
    return f"aerelion-{job_id}"


def strong_password(length: int = 24) -> str:
    """Letters, digits and symbols, at least one of each (Hostinger asks 12+ characters)."""
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#%+-.=@^_~"]
    alphabet = "".join(classes)
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in group for c in candidate) for group in classes):
            return candidate


def new_ssh_key_pair(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH PEM, public key line) of a fresh Ed25519 pair."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


@dataclass(frozen=True)
class ProvisioningConfig:
    """Registry settings for new VPS (`hostinger/*`)."""

    template_id: int | None
    payment_method_id: int | None
    setup_timeout_s: int
    poll_interval_s: int
    confirm_purchase_s: int  # how long a purchase whose reply was lost may take to show up

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ProvisioningConfig:
        def number(name: str, default: int | None = None) -> int | None:
            value = str(row.get(name) or "")
            return int(value) if value.isdigit() else default

        return cls(
            template_id=number("template_id"),
            payment_method_id=number("payment_method_id"),
            setup_timeout_s=number("setup_timeout_s", 1800),
            poll_interval_s=number("poll_interval_s", 15),
            confirm_purchase_s=number("confirm_purchase_s", 900),
        )


class VpsProvisioner:
    """The handler of `provision_vps` jobs."""

    def __init__(
        self, database: Database, vault: Vault | None, hostinger: ClientFactory | None
    ) -> None:
        self.database = database
        self.vault = vault
        self.hostinger = hostinger

    async def __call__(self, claim: Claim, queue: JobQueue) -> str:
        if self.vault is None:
            return await queue.fail(claim, "credential encryption is not configured")
        if self.hostinger is None:
            return await queue.fail(claim, "HOSTINGER_API_TOKEN is not configured")
        async with self.database.as_service() as tx:
            config = ProvisioningConfig.from_row(await tx.one("worker_settings") or {})
        if config.template_id is None:
            return await queue.fail(
                claim, "hostinger/template_id is not configured", retryable=False
            )
        instance_id = claim.vps_instance_id or await self._prepare(claim, queue)
        try:
            async with self.hostinger() as hostinger:
                return await self._advance(claim, queue, hostinger, config, instance_id)
        except HostingerError as error:
            return await queue.fail(claim, f"Hostinger: {error.message}", retryable=error.retryable)

    async def _advance(
        self,
        claim: Claim,
        queue: JobQueue,
        hostinger: HostingerClient,
        config: ProvisioningConfig,
        instance_id: uuid.UUID,
    ) -> str:
        hostname = hostname_for(claim.job_id)
        vm_id = claim.result.get("virtual_machine_id")
        if vm_id is None:
            found = await hostinger.find_by_hostname(hostname)
            if found is not None:  # bought by an earlier attempt
                await queue.report(
                    claim, "record_provisioned_vm", virtual_machine_id=str(found.id), order=None
                )
                vm_id = found.id
            elif claim.purchase_started_at is not None:
                # An earlier purchase may have gone through: look again, never buy twice.
                return await self._confirm_later(claim, queue, config)
            else:
                bought = await self._purchase(claim, queue, hostinger, config, instance_id)
                if isinstance(bought, str):
                    return bought  # the job is waiting or failed
                vm_id = bought
        vm = await hostinger.get_virtual_machine(int(vm_id))
        if vm.state == "running" and vm.ipv4:
            row = await queue.report(
                claim,
                "finish_provisioned_vps",
                ip_address=vm.ipv4[0],
                n8n_instance_url=f"http://{vm.ipv4[0]}:{N8N_PORT}",
            )
            return row["status"] if row else "completed"
        if vm.state == "error":
            await queue.report(claim, "mark_provisioned_vps_error")
            return await queue.fail(
                claim, f"Hostinger VM {vm.id} is in state error", retryable=False
            )
        if vm.state == "initial":  # bought but not set up: finish the setup through the API
            await hostinger.setup_virtual_machine(
                vm.id, await self._setup(claim, config, instance_id)
            )
        return await queue.wait(
            claim, "wait_running", config.poll_interval_s, config.setup_timeout_s
        )

    async def _purchase(
        self,
        claim: Claim,
        queue: JobQueue,
        hostinger: HostingerClient,
        config: ProvisioningConfig,
        instance_id: uuid.UUID,
    ) -> int | str:
        """The VM id bought, or the job's status when it could not be bought now."""
        setup = await self._setup(claim, config, instance_id)
        await queue.report(claim, "mark_provisioning_purchase", started=True)
        try:
            order, vm = await hostinger.purchase_virtual_machine(
                item_id=claim.payload["item_id"],
                setup=setup,
                payment_method_id=config.payment_method_id,
            )
        except HostingerError as error:
            if error.outcome_unknown:
                return await self._confirm_later(claim, queue, config)
            await queue.report(claim, "mark_provisioning_purchase", started=False)
            return await queue.fail(
                claim, f"Hostinger refused the purchase: {error.message}", retryable=error.retryable
            )
        summary = {key: order.get(key) for key in ("id", "status", "subscription_id")}
        await queue.report(
            claim, "record_provisioned_vm", virtual_machine_id=str(vm.id), order=summary
        )
        return vm.id

    async def _confirm_later(
        self, claim: Claim, queue: JobQueue, config: ProvisioningConfig
    ) -> str:
        """Wait for a VM whose purchase reply was lost to show up under the job's hostname;
        if it never does, fail (the operators are told) rather than buy a second one."""
        return await queue.wait(
            claim,
            "confirm_purchase",
            config.poll_interval_s,
            config.confirm_purchase_s,
            timeout_error=(
                f"the purchase's outcome is unknown and no VM named {hostname_for(claim.job_id)}"
                " appeared: check hPanel (a VM left 'initial' keeps Hostinger's own hostname)"
                " before retrying; nothing was bought a second time"
            ),
        )

    async def _prepare(self, claim: Claim, queue: JobQueue) -> uuid.UUID:
        """Create the job's VPS row with freshly generated, sealed secrets."""
        assert self.vault is not None
        instance_id = uuid.uuid4()
        hostname = hostname_for(claim.job_id)
        private_key, public_key = new_ssh_key_pair(hostname)
        ssh = self.vault.seal_json(
            {
                "root_password": strong_password(),
                "private_key": private_key,
                "public_key": public_key,
            },
            Context("vps_instances", SSH_COLUMN, str(instance_id)),
        )
        n8n = self.vault.seal_json(
            {"username": "admin", "password": strong_password()},
            Context("vps_instances", N8N_COLUMN, str(instance_id)),
        )
        await queue.report(
            claim,
            "prepare_provisioned_vps",
            instance_id=instance_id,
            hostname=hostname,
            ssh_ciphertext=ssh.ciphertext,
            ssh_iv=ssh.iv,
            ssh_tag=ssh.tag,
            ssh_key_version=ssh.key_version,
            ssh_key_label=hostname,
            n8n_ciphertext=n8n.ciphertext,
            n8n_iv=n8n.iv,
            n8n_tag=n8n.tag,
            n8n_key_version=n8n.key_version,
        )
        return instance_id

    async def _setup(
        self, claim: Claim, config: ProvisioningConfig, instance_id: uuid.UUID
    ) -> dict[str, Any]:
        """Hostinger's `setup`, with the secrets stored for this job."""
        assert self.vault is not None
        async with self.database.as_service() as tx:
            row = await tx.one("provisioned_vps_secrets", {"instance_id": instance_id})
        if row is None:
            raise LookupError(f"no VPS row {instance_id}")
        sealed = Sealed(
            row["encrypted_ssh_private_key"],
            row["ssh_encryption_iv"],
            row["ssh_encryption_tag"],
            row["ssh_key_version"],
        )
        ssh = self.vault.open_json(sealed, Context("vps_instances", SSH_COLUMN, str(instance_id)))
        hostname = hostname_for(claim.job_id)
        return {
            "template_id": config.template_id,
            "data_center_id": int(claim.payload["data_center_id"]),
            "hostname": hostname,
            "password": ssh["root_password"],
            "public_key": {"name": hostname, "key": ssh["public_key"]},
            "enable_backups": False,
            "install_monarx": False,
        }
