"""The `aerelion` command: local identity, configuration checks, and serving for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from aerelion.embedded import EmbeddedPostgres, free_port
from aerelion.local_identity import LOCAL_SECRETS, ensure_local_env
from support import REPO

SECRET = "cli-test-secret-" + "z" * 40


def aerelion(
    *args: str, env: dict[str, str], cwd: Path = REPO, timeout: float = 60, inherit: bool = True
):
    return subprocess.run(
        [sys.executable, "-m", "aerelion.cli", *args],
        cwd=cwd,
        env={**os.environ, **env} if inherit else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_users_and_tokens(migrated_database):
    env = {"DATABASE_URL": migrated_database, "SUPABASE_JWT_SECRET": SECRET}
    created = aerelion("users", "create", "Grace@Example.com", "--admin", env=env)
    assert created.returncode == 0, created.stderr
    user_id = created.stdout.strip()
    again = aerelion("users", "create", "grace@example.com", env=env)
    assert again.stdout.strip() == user_id  # the same user

    token = aerelion("token", "grace@example.com", "--ttl", "120", env=env)
    claims = jwt.decode(
        token.stdout.strip(), SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert (claims["sub"], claims["role"], claims["email"]) == (
        user_id,
        "authenticated",
        "grace@example.com",
    )
    assert claims["exp"] - claims["iat"] == 120

    service = aerelion("token", "--service-role", env=env)
    assert (
        jwt.decode(service.stdout.strip(), SECRET, algorithms=["HS256"])["role"] == "service_role"
    )

    missing = aerelion("token", "nobody@example.com", env=env)
    assert missing.returncode == 1
    assert "aerelion users create nobody@example.com" in missing.stderr


def test_check_reports_each_problem_without_echoing_secrets():
    bad_key = "c2hvcnQ="  # 5 bytes
    result = aerelion(
        "check",
        env={
            "SUPABASE_JWT_SECRET": "too-short",
            "ALLOWED_ORIGINS": "*, https://ok.example.com, ftp://nope",
            "CREDENTIAL_ENCRYPTION_KEY": bad_key,
            "DATABASE_URL": "mysql://x",
            "AERELION_PORT": "eighty",
        },
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("config: ") for line in lines)
    text = result.stderr
    assert "SUPABASE_JWT_SECRET must be at least 32 bytes" in text
    assert "ALLOWED_ORIGINS may not contain a wildcard" in text
    assert "'ftp://nope' is not an origin" in text
    assert "CREDENTIAL_ENCRYPTION_KEY must decode to exactly 32 bytes" in text
    assert "DATABASE_URL must be a postgresql:// URL" in text
    assert "AERELION_PORT must be a positive integer" in text
    assert "too-short" not in text and bad_key not in text


def test_check_passes_on_a_good_configuration():
    result = aerelion("check", env={"SUPABASE_JWT_SECRET": SECRET, "ALLOWED_ORIGINS": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration is valid"


def test_local_secrets_are_generated_once(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("HEARTBEAT_SECRET=kept\n")
    added = ensure_local_env(env_file, {"CRON_SECRET": "from-the-environment"})
    assert set(added) == set(LOCAL_SECRETS) - {"CRON_SECRET", "HEARTBEAT_SECRET"}
    text = env_file.read_text()
    assert "HEARTBEAT_SECRET=kept" in text
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert len(values["SUPABASE_JWT_SECRET"]) >= 32
    assert values["SUPABASE_SERVICE_ROLE_KEY"].startswith("sb_secret_")
    assert ensure_local_env(env_file, {"CRON_SECRET": "x"}) == []


def wait_healthy(base: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the server exited: {out}\n{err}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("the server did not become healthy")


def test_make_run_on_the_embedded_database(tmp_path):
    """`aerelion run` without DATABASE_URL: secrets into .env, the embedded database,
    migrations and seed, every function and the queue worker, a Hostinger stand-in, and a
    VPS requested over HTTP coming up; Ctrl-C stops everything."""
    project = tmp_path / "project"
    for folder in ("supabase", "sql", "functions"):
        shutil.copytree(REPO / folder, project / folder)
    state = REPO / ".aerelion" / f"test-run-{os.getpid()}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SUPABASE_"))}
    env.update({"AERELION_STATE_DIR": str(state), "AERELION_PORT": str(port)})
    process = subprocess.Popen(
        [sys.executable, "-m", "aerelion.cli", "run"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        assert "SUPABASE_JWT_SECRET=" in (project / ".env").read_text()
        spec = httpx.get(f"{base}/openapi.json").json()
        assert "/functions/v1/hostinger-provision" in spec["paths"]

        # A newcomer's first VPS, end to end, on the local Hostinger stand-in.
        def cli(*args: str) -> str:
            result = aerelion(*args, env=env, cwd=project, inherit=False)
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()

        cli("users", "create", "ops@example.com", "--admin")
        token = cli("token", "ops@example.com")
        accepted = httpx.post(
            f"{base}/functions/v1/hostinger-provision",
            json={"plan": "starter", "region": "us-east-1"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = json.loads(cli("jobs", "show", job_id))
            if job["status"] in ("completed", "failed"):
                break
            time.sleep(1)
        assert job["status"] == "completed", job
        assert job["result"]["ip_address"].startswith("203.0.113.")

        # Checkout answers on the local Stripe stand-in.
        checkout = httpx.post(
            f"{base}/functions/v1/create-checkout",
            json={"priceId": "price_1SzdaCJAQcpzy6vVzFLVYkgd"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert checkout.status_code == 200, checkout.text
        assert checkout.json()["url"].startswith("http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    try:
        assert process.returncode == 0, err
        assert f"http://127.0.0.1:{port}/functions/v1/" in out
        assert EmbeddedPostgres(state / "postgres").running() is None
    finally:
        shutil.rmtree(state, ignore_errors=True)
