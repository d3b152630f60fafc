"""Re-sealing every encrypted column with the newest key and the bound scheme.

The database lists the encrypted column sets (`encrypted_columns`), hands out batches of
values not yet current in id order, and stores each batch of re-sealed values in one
statement, each only if its row still holds what was read. A run that stops half way (a
crash) is simply run again: rows already rotated no longer qualify. Values on a key
version nobody configured, or that do not decrypt, are reported and left untouched —
never lost. Plaintext exists only in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from aerelion.transactions import Transaction
from aerelion.vault import Context, DecryptionError, Sealed, UnknownKeyVersion, Vault

TransactionFactory = Callable[[], AbstractAsyncContextManager[Transaction]]
REPORTED_IDS = 20  # how many ids of problem rows a report lists


@dataclass
class ColumnReport:
    rotated: int = 0
    changed_meanwhile: int = 0
    unknown_version: int = 0
    unreadable: int = 0
    problem_ids: list[str] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)  # dry run: version, scheme, n

    def problem(self, row_id: uuid.UUID) -> None:
        if len(self.problem_ids) < REPORTED_IDS:
            self.problem_ids.append(str(row_id))


@dataclass
class RotationReport:
    dry_run: bool
    version: int
    columns: dict[str, ColumnReport] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts only (this goes to the audit row)."""
        return {
            "dry_run": self.dry_run,
            "key_version": self.version,
            "rotated": sum(c.rotated for c in self.columns.values()),
            "unknown_version": sum(c.unknown_version for c in self.columns.values()),
            "unreadable": sum(c.unreadable for c in self.columns.values()),
            "columns": {
                name: {
                    "rotated": c.rotated,
                    "unknown_version": c.unknown_version,
                    "unreadable": c.unreadable,
                    "changed_meanwhile": c.changed_meanwhile,
                }
                for name, c in self.columns.items()
            },
        }

    def as_dict(self) -> dict[str, Any]:
        details = self.summary()
        for name, column in self.columns.items():
            details["columns"][name]["problem_ids"] = column.problem_ids
            if self.dry_run:
                details["columns"][name]["counts"] = column.counts
        return details


async def rotate(
    transaction: TransactionFactory, vault: Vault, *, dry_run: bool, batch_size: int = 500
) -> RotationReport:
    report = RotationReport(dry_run=dry_run, version=vault.current_version)
    async with transaction() as tx:
        column_sets = await tx.all("encrypted_column_sets")
    for column_set in column_sets:
        name = column_set["name"]
        column = report.columns.setdefault(name, ColumnReport())
        if dry_run:
            async with transaction() as tx:
                column.counts = await tx.all("count_encrypted_values", {"name": name})
            continue
        await _rotate_column_set(transaction, vault, column_set, column, batch_size)
    if not dry_run:
        async with transaction() as tx:
            await tx.run("record_key_rotation", {"summary": report.summary()})
    return report


async def _rotate_column_set(
    transaction: TransactionFactory,
    vault: Vault,
    column_set: dict[str, Any],
    column: ColumnReport,
    batch_size: int,
) -> None:
    name = column_set["name"]
    after: uuid.UUID | None = None
    while True:
        async with transaction() as tx:
            rows = await tx.all(
                "encrypted_values_to_rotate",
                {
                    "name": name,
                    "version": vault.current_version,
                    "after": after,
                    "limit": batch_size,
                },
            )
            resealed_values = []
            for row in rows:
                context = Context(
                    column_set["table_name"], column_set["ciphertext_column"], str(row["id"])
                )
                sealed = Sealed(row["ciphertext"], row["iv"], row["tag"], row["key_version"])
                try:
                    resealed = vault.reseal(sealed, context)
                except UnknownKeyVersion:
                    column.unknown_version += 1
                    column.problem(row["id"])
                    continue
                except DecryptionError:
                    column.unreadable += 1
                    column.problem(row["id"])
                    continue
                resealed_values.append(
                    {
                        "id": str(row["id"]),
                        "previous_ciphertext": row["ciphertext"],
                        "ciphertext": resealed.ciphertext,
                        "iv": resealed.iv,
                        "tag": resealed.tag,
                        "key_version": resealed.key_version,
                    }
                )
            if resealed_values:
                stored = await tx.all(
                    "store_rotated_values", {"name": name, "values": Jsonb(resealed_values)}
                )
                column.rotated += len(stored)
                column.changed_meanwhile += len(resealed_values) - len(stored)
        if len(rows) < batch_size:
            return
        after = rows[-1]["id"]
