"""A throwaway PostgreSQL server in a directory: `initdb` + `pg_ctl`, no system service.

Used by the tests (a server per test session) and by a local PostgreSQL run. Debian's `postgresql`
package puts the binaries under /usr/lib/postgresql/<major>/bin. PostgreSQL refuses to run as root, so
when we are root the server runs as the `postgres` user the package creates (the data directory is
handed to it); clients connect over loopback TCP with a password.

    python -m mesh.pglocal start DIR PORT   # prints the DSN
    python -m mesh.pglocal stop DIR
    python -m mesh.pglocal serve DIR PORT SERVICE...   # in the foreground, for supervisord

`serve` is how `make run BACKEND=postgres` runs it: each SERVICE gets its own login role and its own
database, owned by that role (so the service applies its own migrations at start and can reach no
other service's tables), with its password in DIR/SERVICE.pgpass (0600, the invoking user's) that
`service_dsn` names; no password ever appears in a rendered config.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

DB_NAME = "agentfactory"
DB_USER = "agentfactory"
_SERVICE = re.compile(r"\A[a-z][a-z0-9_]{0,40}\Z")  # becomes a role and a database name: keep it plain


def service_role(service: str) -> str:
    """The login role, and the database it owns, of one service (docs/database.md)."""
    if not _SERVICE.fullmatch(service):
        raise ValueError(f"{service!r} is not a plain lower-case service name")
    return f"af_{service}"


def passfile(root: Path, service: str) -> Path:
    return root / f"{service}.pgpass"


def service_dsn(root: Path, port: int, service: str) -> str:
    """The DSN a service connects with: its own role and database, its password read from a passfile."""
    role = service_role(service)
    return f"postgresql://{role}@127.0.0.1:{port}/{role}?passfile={passfile(root, service)}"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (or the one on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make setup does it)")
    return Path(initdb).parent


class LocalPostgres:
    """`data_dir` and its parents must be searchable by the `postgres` user when we run as root."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.root = data_dir
        self.pgdata = data_dir / "pgdata"
        self.port = port
        self._password_file = data_dir / "password"
        self._as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        password = self._password_file.read_text().strip()
        return f"postgresql://{DB_USER}:{password}@127.0.0.1:{self.port}/{DB_NAME}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd="/")
        if check and done.returncode != 0:
            tail = (done.stderr or done.stdout)[-2000:]
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {tail}")
        return done

    def _hand_over(self, path: Path) -> None:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def init(self) -> None:
        """initdb once (a superuser `agentfactory` with a random password and its database)."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        password = secrets.token_urlsafe(18)
        self._password_file.write_text(password + "\n")
        self._password_file.chmod(0o600)  # handed to `postgres` for initdb when we are root
        self._hand_over(self._password_file)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._hand_over(self.pgdata)
        self._run(
            str(bin_dir() / "initdb"), "-D", str(self.pgdata), "-U", DB_USER, "--auth=scram-sha-256",
            f"--pwfile={self._password_file}", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        # initdb (as `postgres`) has read it; from now on only we do (psql, dsn): the superuser's password
        # must not be readable by every local user.
        os.chown(self._password_file, os.getuid(), os.getgid())
        self._password_file.chmod(0o600)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# mesh/pglocal.py: loopback only, sockets in the data dir, durable commits\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.pgdata}'\n"
                "max_connections = 200\nfsync = on\nsynchronous_commit = on\n"
            )

    def start(self, timeout: int = 60) -> None:
        self.init()
        log = self.root / "postgres.log"
        if not log.exists():
            log.touch()
            self._hand_over(log)
        self._run(
            str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-l", str(log), "-o", f"-p {self.port}",
            "-w", "-t", str(timeout), "start",
        )  # fmt: skip
        self._ensure_database()

    def psql(self, sql: str, database: str = "postgres", host: str = "127.0.0.1") -> str:
        """Run one SQL command as the superuser through psql; its unaligned output. ``host`` may be the
        data directory (its Unix socket)."""
        cmd = [str(bin_dir() / "psql"), "-h", host, "-p", str(self.port), "-U", DB_USER, "-d", database,
               "-v", "ON_ERROR_STOP=1", "-tAc", sql]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self._password_file.read_text().strip()}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def _ensure_database(self) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
            self.psql(f"CREATE DATABASE {DB_NAME}")

    def provision(self, services: list[str]) -> None:
        """A role and a database per service, each role owning its database and no other's, with CONNECT
        revoked from PUBLIC. Idempotent; runs on a server listening on its socket only (see `serve`)."""
        for service in services:
            role = service_role(service)
            secret = passfile(self.root, service)
            password = secret.read_text().strip().rsplit(":", 1)[1] if secret.exists() else secrets.token_urlsafe(18)
            exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'", host=str(self.pgdata))
            verb = "ALTER" if exists == "1" else "CREATE"
            # token_urlsafe's alphabet needs no quoting inside a SQL literal.
            self.psql(f"{verb} ROLE {role} LOGIN PASSWORD '{password}'", host=str(self.pgdata))
            if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{role}'", host=str(self.pgdata)) != "1":
                self.psql(f"CREATE DATABASE {role} OWNER {role}", host=str(self.pgdata))
            self.psql(f"REVOKE ALL ON DATABASE {role} FROM PUBLIC", host=str(self.pgdata))
            # libpq's passfile format (host:port:database:user:password); asyncpg and pg_dump read it and
            # ignore it unless only its owner may read it.
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"127.0.0.1:*:{role}:{role}:{password}\n")

    def serve(self, services: list[str]) -> None:
        """Provision, then become the postmaster in the foreground (supervisord signals it directly:
        SIGINT is a fast shutdown). Provisioning runs on a private start that listens on the data
        directory's socket only, so no service can log in before its role is ready."""
        self.init()
        if any(not passfile(self.root, s).exists() for s in services):
            log = self.root / "provision.log"
            log.touch()
            self._hand_over(log)
            self._run(
                str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-l", str(log),
                "-o", f"-p {self.port} -c listen_addresses=''", "-w", "-t", "60", "start",
            )  # fmt: skip
            try:
                self.provision(services)
            finally:
                self.stop()
        postgres = str(bin_dir() / "postgres")
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.setgid(pw.pw_gid)
            os.initgroups("postgres", pw.pw_gid)
            os.setuid(pw.pw_uid)
        os.chdir("/")
        os.execv(postgres, [postgres, "-D", str(self.pgdata), "-p", str(self.port)])

    def pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def stop(self, mode: str = "fast") -> None:
        if self.pid() is None:
            return
        self._run(str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "stop":
        LocalPostgres(Path(argv[1]), 0).stop()
        return 0
    if len(argv) >= 4 and argv[0] == "serve":
        LocalPostgres(Path(argv[1]), int(argv[2])).serve(argv[3:])
        return 0  # not reached: serve becomes the server
    if len(argv) == 3 and argv[0] == "start":
        server = LocalPostgres(Path(argv[1]), int(argv[2]))
        server.start()
        print(server.dsn)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
