"""A throwaway PostgreSQL server in a directory: `initdb` + `pg_ctl`, no system service.

Used by the tests (a server per test session) and by a local PostgreSQL run. Debian's `postgresql`
package puts the binaries under /usr/lib/postgresql/<major>/bin. PostgreSQL refuses to run as root, so
when we are root the server runs as the `postgres` user the package creates (the data directory is
handed to it); clients connect over loopback TCP with a password.

    python -m mesh.pglocal start DIR PORT   # prints the DSN
    python -m mesh.pglocal stop DIR
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

DB_NAME = "agentfactory"
DB_USER = "agentfactory"


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
        self._password_file.chmod(0o644 if self._as_postgres else 0o600)
        self._hand_over(self._password_file)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._hand_over(self.pgdata)
        self._run(
            str(bin_dir() / "initdb"), "-D", str(self.pgdata), "-U", DB_USER, "--auth=scram-sha-256",
            f"--pwfile={self._password_file}", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
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

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command as the superuser through psql; its unaligned output."""
        cmd = [str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", database,
               "-v", "ON_ERROR_STOP=1", "-tAc", sql]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self._password_file.read_text().strip()}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def _ensure_database(self) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
            self.psql(f"CREATE DATABASE {DB_NAME}")

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
    if len(argv) == 3 and argv[0] == "start":
        server = LocalPostgres(Path(argv[1]), int(argv[2]))
        server.start()
        print(server.dsn)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
