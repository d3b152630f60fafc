"""The embedded PostgreSQL: a real server on loopback TCP, as root and as a normal user,
stopped when we are done."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sysconfig
import textwrap
from pathlib import Path

import psycopg
import pytest

from aerelion.embedded import (
    SERVER_USER,
    EmbeddedPostgres,
    process_alive,
    server_account,
    throwaway,
)
from support import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")


def server_owner(data_dir: Path) -> str:
    pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    uid = os.stat(f"/proc/{pid}").st_uid
    return pwd.getpwuid(uid).pw_name


def listening_addresses(port: int) -> set[str]:
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


def test_a_cluster_starts_on_loopback_and_stops():
    root = REPO / ".aerelion" / f"test-embedded-{os.getpid()}"
    with throwaway(root) as server:
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        # 127.0.0.1 only, in /proc's little-endian hex
        assert listening_addresses(server.port) == {"0100007F"}
        pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
        if os.geteuid() == 0:
            assert server_owner(server.data_dir) == SERVER_USER
    assert not root.exists()
    assert not process_alive(pid)


def test_a_running_cluster_is_found_again():
    root = REPO / ".aerelion" / f"test-reuse-{os.getpid()}"
    cluster = EmbeddedPostgres(root, durable=False)
    try:
        first = cluster.start()
        again = EmbeddedPostgres(root, durable=False)
        assert again.running() == first
        assert again.start() == first
    finally:
        cluster.destroy()
    assert cluster.running() is None


@pytest.mark.skipif(os.geteuid() != 0, reason="this run is already the normal-user path")
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system python3 to run as a user")
def test_a_normal_user_runs_it_without_side_effects():
    """As a normal user the server runs as that user and nothing outside its folder
    changes (the root path is exercised by every other test of this run)."""
    account = server_account()  # the root path's account; any normal user would do
    home = REPO / ".aerelion" / f"test-user-{os.getpid()}"
    home.mkdir(parents=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    site_packages = sysconfig.get_paths()["purelib"]
    script = textwrap.dedent(
        f"""
        import os, psycopg
        from pathlib import Path
        from aerelion.embedded import throwaway
        assert os.geteuid() != 0
        with throwaway(Path({str(home)!r}) / "pg") as server:
            with psycopg.connect(server.url()) as conn:
                print(conn.execute("select current_user").fetchone()[0])
        print(sorted(os.listdir({str(home)!r})))
        """
    )
    try:
        result = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", script],
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": os.pathsep.join([str(REPO / "src"), site_packages]),
                "HOME": str(home),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if "ModuleNotFoundError" in result.stderr or "ImportError" in result.stderr:
            pytest.skip(f"the system python cannot load this virtualenv: {result.stderr[-200:]}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["postgres", "[]"]
    finally:
        shutil.rmtree(home, ignore_errors=True)
