"""A throw-away PostgreSQL server from Debian's packages, for the warehouse tests.

stdlib only. initdb refuses to run as root, so as root the cluster is created and run by the
`postgres` system user (the package creates it) in a fresh folder it owns; otherwise by the
current user. The server listens on 127.0.0.1 on a free port, with its socket in its own
folder, trusts local connections, and runs with fsync off (a test server: ~1 s to start).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

POSTGRES_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, if any."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        match = re.fullmatch(r"\d+", initdb.parent.parent.name)
        if match:
            found.append((int(match.group()), initdb.parent))
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """initdb + pg_ctl start on a free port; `url(db)` for SQLAlchemy; stop() removes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="emotionops-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", POSTGRES_USER, "--"] if self.as_root else []
        proc = subprocess.run(
            [*prefix, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def start(self) -> LocalPostgres:
        if self.as_root:
            pw = pwd.getpwnam(POSTGRES_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", POSTGRES_USER,
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server on its port (again, after `pause`), with its data."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        self.started = True

    def pause(self) -> None:
        """Stop the server but keep its data: a database that goes down, to come back."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.started = False

    def create_database(self, name: str) -> str:
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", POSTGRES_USER, name,
        )  # fmt: skip
        return self.url(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            if self.started:
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
                )
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
