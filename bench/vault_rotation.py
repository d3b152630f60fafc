"""Credential encryption: two figures, each against a baseline measured in the same run.

1. Seal + open per second on one core. `Vault.seal` then `Vault.open` of a 200-byte
   credential (fresh nonce, associated data binding table, column, row and key version,
   base64 for storage, the version lookup) against the bare `AESGCM.encrypt` +
   `decrypt` of the same bytes with the same key: what the storage format and the
   binding cost on top of the cipher. ROUNDS pairs each, best of three.
2. Key rotation rows per second. ROTATION_ROWS activation credentials sealed with key 1
   are re-sealed with key 2 by `aerelion keys rotate`'s code (`key_rotation.rotate`: the
   batches handed out in id order, decrypt, encrypt, the compare-and-set store per row,
   the audit row), against one set-based UPDATE rewriting the same columns of the same
   rows in SQL: the database's floor for touching those rows, with no cryptography and
   no round trips.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aerelion import deploy, local_identity
from aerelion.config import Settings
from aerelion.key_rotation import rotate
from aerelion.transactions import Database
from aerelion.vault import Context, Vault
from bench.function_rps import REPO, bench_database

ROUNDS = int(os.environ.get("BENCH_VAULT_ROUNDS", "50000"))
ROTATION_ROWS = int(os.environ.get("BENCH_ROTATION_ROWS", "20000"))
PLAINTEXT = b'{"api_key":"' + b"k" * 180 + b'"}'


def best_of_three(run) -> float:
    """Pairs per second of the fastest of three runs (the machine is shared)."""
    return max(ROUNDS / run() for _ in range(3))


def seal_and_open(vault: Vault) -> float:
    context = Context("activation_credentials", "encrypted_data", str(uuid.uuid4()))
    started = time.perf_counter()
    for _ in range(ROUNDS):
        vault.open(vault.seal(PLAINTEXT, context), context)
    return time.perf_counter() - started


def bare_cipher(key: bytes) -> float:
    cipher = AESGCM(key)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        nonce = os.urandom(12)
        cipher.decrypt(nonce, cipher.encrypt(nonce, PLAINTEXT, None), None)
    return time.perf_counter() - started


def fill(url: str, vault: Vault) -> None:
    """ROTATION_ROWS credentials of one request, each sealed for its own row."""
    with psycopg.connect(url) as conn:
        owner = local_identity.create_user(conn, "bench-owner@example.com")
        request_id = conn.execute(
            "insert into public.installation_requests (name, email, user_id)"
            " values ('Bench', 'bench@example.com', %s) returning id",
            [owner],
        ).fetchone()[0]
        rows = []
        for n in range(ROTATION_ROWS):
            row_id = uuid.uuid4()
            sealed = vault.seal(
                PLAINTEXT, Context("activation_credentials", "encrypted_data", str(row_id))
            )
            rows.append((row_id, request_id, f"type-{n}", sealed))
        with conn.cursor().copy(
            "copy public.activation_credentials (id, request_id, credential_type, service_name,"
            " encrypted_data, encryption_iv, encryption_tag, key_version, created_by)"
            " from stdin"
        ) as copy:
            for row_id, request, kind, sealed in rows:
                copy.write_row(
                    (row_id, request, kind, "bench", sealed.ciphertext, sealed.iv, sealed.tag,
                     sealed.key_version, "bench")
                )  # fmt: skip
        conn.execute("analyze public.activation_credentials")


def set_based_rewrite(url: str) -> float:
    """Seconds for one UPDATE touching the same columns of every row (rolled back)."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        count = conn.execute(
            "update public.activation_credentials set encrypted_data = encrypted_data || '',"
            " encryption_iv = encryption_iv, encryption_tag = encryption_tag,"
            " key_version = key_version"
        ).rowcount
        elapsed = time.perf_counter() - started
        conn.rollback()
    assert count == ROTATION_ROWS
    return elapsed


async def rotation(url: str, vault: Vault) -> float:
    database = Database(url, pool_size=2, transaction_pooler=False)
    await database.open()
    try:
        started = time.perf_counter()
        report = await rotate(
            lambda: database.acting_as("service_role", {"role": "service_role"}),
            vault,
            dry_run=False,
        )
        elapsed = time.perf_counter() - started
    finally:
        await database.close()
    rotated = report.summary()["rotated"]
    assert rotated == ROTATION_ROWS, f"rotated {rotated} of {ROTATION_ROWS}"
    return elapsed


def measure(url: str) -> None:
    first, second = AESGCM.generate_key(256), AESGCM.generate_key(256)
    old, new = Vault({1: first}), Vault({1: first, 2: second})

    ours, bare = (
        best_of_three(lambda: seal_and_open(new)),
        best_of_three(lambda: bare_cipher(first)),
    )
    print(
        f"seal+open, one core: {ours:,.0f}/s; bare AES-GCM: {bare:,.0f}/s; ratio {ours / bare:.2f}"
    )

    deploy.push(url, Settings(REPO, {}), out=lambda _: None)
    fill(url, old)
    floor = ROTATION_ROWS / set_based_rewrite(url)
    rows_per_second = ROTATION_ROWS / asyncio.run(rotation(url, new))
    print(
        f"rotation of {ROTATION_ROWS:,} rows: {rows_per_second:,.0f} rows/s;"
        f" set-based UPDATE: {floor:,.0f} rows/s; ratio {rows_per_second / floor:.3f}"
    )


def main() -> None:
    with bench_database() as url:
        measure(url)


if __name__ == "__main__":
    main()
