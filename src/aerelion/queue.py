"""The provisioning queue seen from a worker: claims and what a claim may report.

Every rule is a SQL function (claiming with SKIP LOCKED, counting attempts, backoff,
leases, refusing zombies); this module only names them. A claim is (job id, lease, worker
id); reporting on a claim that was lost raises `LostClaim`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from aerelion.transactions import Database


class LostClaim(Exception):
    """The job is no longer held by this claim (its lease expired and it moved on)."""


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    lease: int
    worker_id: str
    action: str
    step: str
    payload: dict[str, Any]
    user_id: uuid.UUID
    attempt_count: int
    max_attempts: int
    vps_instance_id: uuid.UUID | None
    purchase_started_at: datetime | None
    activation_request_id: uuid.UUID | None
    result: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Claim:
        return cls(
            job_id=row["id"],
            lease=row["claims"],
            worker_id=row["worker_id"],
            action=row["action"],
            step=row["step"],
            payload=row["payload"] or {},
            user_id=row["user_id"],
            attempt_count=row["attempt_count"],
            max_attempts=row["max_attempts"],
            vps_instance_id=row["vps_instance_id"],
            purchase_started_at=row["purchase_started_at"],
            activation_request_id=row["activation_request_id"],
            result=row["result"] or {},
        )

    def holder(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "lease": self.lease, "worker_id": self.worker_id}


class JobQueue:
    """Claims and reports, each one autocommitted statement (one round trip) through the
    service-only SQL functions."""

    def __init__(self, database: Database, worker_id: str, lease_seconds: int) -> None:
        self.database = database
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds

    async def claim(self, limit: int, actions: list[str]) -> list[Claim]:
        """Due jobs of `actions` (a job whose action nobody runs yet waits, visible)."""
        rows = await self.database.as_owner(
            "claim_provisioning_jobs",
            {
                "limit": limit,
                "worker_id": self.worker_id,
                "lease_seconds": self.lease_seconds,
                "actions": actions,
            },
        )
        return [Claim.from_row(row) for row in rows]

    async def report(self, claim: Claim, query: str, **params: Any) -> dict[str, Any] | None:
        """Run a holder-checked statement for `claim`."""
        try:
            rows = await self.database.as_owner(query, {**claim.holder(), **params})
        except psycopg.Error as error:
            if error.sqlstate == "PT409":
                raise LostClaim(str(claim.job_id)) from error
            raise
        return rows[0] if rows else None

    async def renew(self, claim: Claim) -> None:
        await self.report(claim, "renew_provisioning_lease", lease_seconds=self.lease_seconds)

    async def complete(self, claim: Claim, result: dict[str, Any]) -> str:
        row = await self.report(claim, "complete_provisioning_job", result=result)
        return row["status"] if row else "completed"

    async def fail(self, claim: Claim, error: str, *, retryable: bool = True) -> str:
        row = await self.report(
            claim, "fail_provisioning_job", error=error[:2000], retryable=retryable
        )
        return row["status"] if row else "failed"

    async def wait(
        self,
        claim: Claim,
        step: str,
        delay_seconds: int,
        deadline_seconds: int,
        timeout_error: str | None = None,
    ) -> str:
        """Come back later without counting an attempt; fail with `timeout_error` once
        `deadline_seconds` have passed waiting at `step`."""
        row = await self.report(
            claim,
            "wait_provisioning_job",
            step=step,
            delay_seconds=delay_seconds,
            deadline_seconds=deadline_seconds,
            timeout_error=timeout_error,
        )
        return row["status"] if row else "waiting"
