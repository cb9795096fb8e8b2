"""A throw-away distributed Airflow on this machine: Airflow's CeleryExecutor on Debian's
PostgreSQL (metadata DB and Celery result backend) and Debian's Redis (the broker), with the
api-server, scheduler, dag-processor and N Celery workers as separate processes, each in its
own session with its log in the cluster's folder. The same shape as a multi-machine install:
the processes share nothing but the database, the broker and the execution API URL.

stdlib + psycopg (both venvs have it). While a cluster runs, this process is a child subreaper
(Linux prctl): every process a service starts stays in its process tree, even one that
daemonizes or moves to another session, so `leftover_processes()` finds anything that
outlived `stop()` (Airflow's setproctitle rewrites the environment area of its processes, so
an inherited marker variable would not do).

On one machine every worker has the same FQDN, which Airflow records as the task instance's
`hostname`. Each worker therefore gets its own name through Airflow's `[core]
hostname_callable` (`worker_hostname` below, reading EMOTIONOPS_CELERY_WORKER): on separate
machines the FQDN tells them apart and no callable is needed.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _postgres import LocalPostgres, find_bin_dir, free_port

WORKER_ENV = "EMOTIONOPS_CELERY_WORKER"


def worker_hostname() -> str:
    """Airflow `[core] hostname_callable` for a worker: its Celery name, else the FQDN."""
    return os.environ.get(WORKER_ENV) or socket.getfqdn()


_PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper(on: bool) -> None:
    """Make this process the parent of every orphaned descendant (Linux prctl), so nothing a
    service starts can leave the tree, whatever it daemonizes into or its session."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, str]:
    """Every process below `root` in the process tree: pid -> state ('Z' for a zombie)."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            states[int(entry.name)] = stat[0]
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = states[pid]
        todo.extend(children.get(pid, []))
    return found


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (forked workers) are split between processes."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path
    killed: bool = False  # SIGKILL was needed: it did not stop on SIGTERM


@dataclass
class CeleryCluster:
    """start(): PostgreSQL, Redis, `airflow db migrate`, then the Airflow services."""

    dags_folder: Path
    workers: tuple[str, ...] = ("w1", "w2")
    worker_concurrency: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 300

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="emotionops-celery-"))
        self.home = self.root / "airflow-home"
        self.home.mkdir()
        self.logs = self.root / "logs"
        self.logs.mkdir()
        self.before: set[int] = set()  # descendants of this process before start()
        self.reaped: list[int] = []  # orphaned zombies reaped (their parent died first)
        self.airflow = Path(sys.executable).with_name("airflow")
        self.services: list[Service] = []
        self.postgres: LocalPostgres | None = None
        self.redis_port = free_port()
        self.api_port = free_port()
        self.peak_pss_mb = 0.0
        self._sampling = threading.Event()
        self.jwt_secret = secrets.token_urlsafe(32)
        self._env: dict[str, str] = {}

    # --- configuration -------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment every Airflow process of the cluster shares (no inherited AIRFLOW_*)."""
        assert self.postgres is not None
        db = self.postgres.url("airflow")  # postgresql+psycopg://...
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        tests = str(Path(__file__).resolve().parent)
        return {
            **base,
            "PYTHONPATH": os.pathsep.join(filter(None, [tests, base.get("PYTHONPATH")])),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Manual runs only: a daily DAG must not add a scheduled run next to the test's.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            # psycopg 3 drives both engines (Airflow would guess asyncpg for the async one).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db.replace("+psycopg:", "+psycopg_async:"),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # Airflow 3: workers run tasks through the api-server's execution API, which
            # checks the JWTs it hands out; every process must share its secret.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                f"http://127.0.0.1:{self.api_port}/execution/"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__CORE__FERNET_KEY": "",
            **self.extra_env,
        }

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> CeleryCluster:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries: make system-packages")
        if shutil.which("redis-server") is None:
            raise RuntimeError("no redis-server: make system-packages")
        set_child_subreaper(True)
        self.before = set(descendants(os.getpid()))
        self.postgres = LocalPostgres(bin_dir).start()  # its postmaster is ours too
        self.postgres.create_database("airflow")
        self._env = env = self.env()
        self._popen(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.root)],
        )  # fmt: skip
        self._wait(lambda: redis_ping(self.redis_port), "redis-server answering PING", 30)
        self._sampler()
        migrate = subprocess.run(
            [str(self.airflow), "db", "migrate"], env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        (self.logs / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrate.stderr[-3000:]}")
        self._airflow("api-server", "api-server", "--port", str(self.api_port), "--workers", "1")
        self._airflow("scheduler", "scheduler")
        self._airflow("dag-processor", "dag-processor")
        for name in self.workers:
            self._airflow(
                f"worker-{name}", "celery", "worker", "--celery-hostname", f"{name}@%h",
                "--concurrency", str(self.worker_concurrency), "--skip-serve-logs",
                "--pid", str(self.root / f"worker-{name}.pid"),
                env={
                    WORKER_ENV: f"{name}@{socket.gethostname()}",
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "_celery_cluster.worker_hostname",
                },
            )  # fmt: skip
        self._wait(self._api_up, "the api-server answering /api/v2/monitor/health", 180)
        self._wait(
            lambda: len(self.sql("select 1 from job where job_type = 'SchedulerJob'"
                                 " and state = 'running'")) > 0,
            "a running scheduler job", 180,
        )  # fmt: skip
        for name in self.workers:
            self._wait(
                lambda name=name: "ready." in self.log_text(f"worker-{name}"),
                f"Celery worker {name} ready", 180,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        """SIGTERM each service's process group (workers first: warm shutdown), then
        SIGKILL only what is still there after 60 s (recorded in `killed`)."""
        order = sorted(
            self.services, key=lambda s: (not s.name.startswith("worker"), s.name == "redis")
        )
        try:
            for service in order:
                self._terminate(service)
        finally:
            self._sampling.set()
            if self.postgres is not None:
                self.postgres.stop()

    def _terminate(self, service: Service) -> None:
        if service.proc.poll() is None:
            os.killpg(service.proc.pid, signal.SIGTERM)
        try:
            service.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.killed = True
        deadline = time.monotonic() + 30  # its children (pool, supervisors) exit after it
        while _group_alive(service.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(service.proc.pid):
            service.killed = True
            os.killpg(service.proc.pid, signal.SIGKILL)
            service.proc.wait(timeout=30)

    def processes(self) -> list[int]:
        """Live processes of the cluster: descendants of this process started since start()."""
        return [
            pid
            for pid, state in descendants(os.getpid()).items()
            if pid not in self.before and state != "Z"
        ]

    def leftover_processes(self, grace_s: float = 10) -> list[str]:
        """Processes of the cluster still alive after stop(): 'pid cmdline' lines. Orphans
        reparent to this process (a child subreaper since start()), so none can hide."""
        deadline = time.monotonic() + grace_s
        while True:
            self._reap_orphans()
            alive = self.processes()
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        set_child_subreaper(False)
        left = []
        for pid in alive:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue  # exited meanwhile
            left.append(f"{pid} {cmdline.decode(errors='replace')}")
        return left

    def _reap_orphans(self) -> None:
        """Collect the exit status of orphans that died as our children (never a Popen's)."""
        mine = {s.proc.pid for s in self.services}
        for pid, state in descendants(os.getpid()).items():
            stat = _stat(pid)
            if state == "Z" and pid not in self.before | mine and stat and stat[1] == os.getpid():
                try:
                    os.waitpid(pid, os.WNOHANG)
                    self.reaped.append(pid)
                except ChildProcessError:
                    pass

    def cleanup(self) -> None:
        set_child_subreaper(False)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------
    def sql(self, query: str, *args: object) -> list[tuple]:
        import psycopg

        assert self.postgres is not None
        url = self.postgres.url("airflow").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute(query, args).fetchall()

    def cli(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            [str(self.airflow), *args], env=self._env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {proc.stderr[-3000:]}")
        return proc.stdout

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {s.name} ({s.log}):\n" + "\n".join(self.log_text(s.name).splitlines()[-lines:])
            for s in self.services
        )

    def task_log_tails(self, dag_id: str, run_id: str, lines: int = 15) -> str:
        """The end of every task attempt log of a run (the workers write them here)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        return "\n".join(
            f"--- {log.relative_to(folder)}:\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            for log in sorted(folder.rglob("*.log"))
        )

    def _airflow(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self._popen(name, [str(self.airflow), *args], env=env)

    def _popen(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, env={**self._env, **(env or {})}, cwd=self.root, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.services.append(Service(name, proc, log))

    def _api_up(self) -> bool:
        import urllib.request

        try:
            url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _wait(self, ready, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [s.name for s in self.services if s.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}:\n"
                                   + self.log_tails())  # fmt: skip
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} after {timeout_s:.0f} s:\n" + self.log_tails())
            time.sleep(0.5)  # polling services that have no readiness signal

    def _sampler(self) -> None:
        def sample() -> None:
            while not self._sampling.wait(1.0):
                total = sum(_pss_mb(pid) for pid in self.processes())
                self.peak_pss_mb = max(self.peak_pss_mb, total)

        threading.Thread(target=sample, daemon=True).start()

    def __enter__(self) -> CeleryCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode == 0
