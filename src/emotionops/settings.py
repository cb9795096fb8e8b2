"""One settings object for endpoints, credentials and paths (environment variables or `.env`).

Tunable knobs do not live here: they are in `params.yaml` (see `emotionops.params`).
Settings are built lazily at the entry point; importing this module does no work.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as EnvParseError

from emotionops.errors import EmotionOpsError


class SettingsError(EmotionOpsError, ValueError):
    """Raised when the environment asks for something unsafe or inconsistent."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMOTIONOPS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["local", "production"] = Field(
        "local", description="'production' refuses embedded defaults (SQLite, auto-started MLflow)."
    )
    project_dir: Path = Field(Path("."), description="DVC/git project root holding params.yaml.")
    data_dir: Path = Field(Path("data"), description="Working data; relative to project_dir.")
    params_file: Path = Field(Path("params.yaml"), description="Relative to project_dir.")

    warehouse_url: str | None = Field(
        None,
        description="SQLAlchemy URL (sqlite:///..., postgresql+psycopg://..., "
        "oracle+oracledb://...). Default: SQLite file in data_dir.",
    )
    warehouse_password: SecretStr | None = Field(
        None, description="Password injected into warehouse_url when the URL carries none."
    )
    warehouse_conn_id: str | None = Field(
        None,
        description="Airflow connection id (e.g. oracle_default) for the warehouse. Resolved on "
        "the Airflow side (plugins/emotionops_warehouse.py), which hands the CLI "
        "EMOTIONOPS_WAREHOUSE_URL; the ML environment has no Airflow to resolve it.",
    )
    warehouse_connect_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Bound on opening a warehouse connection, also when a port accepts but "
        "the database never answers.",
    )

    ingest_url: str | None = Field(
        None,
        description="Full URL of the inference API's ingest endpoint (e.g. "
        "https://api.example/ingest): the edge sends its window rows there. Unset: straight "
        "to the warehouse.",
    )
    ingest_token: SecretStr | None = Field(
        None,
        description="Bearer token of POST /ingest: the edge sends it to ingest_url, the API "
        "checks it (constant time). Required in production when ingest_url is set, and by "
        "the API in production (16+ characters); unset (local mode), the API takes any rows.",
    )

    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow server URL. Unset: the demo starts a local server itself."
    )
    mlflow_tracking_username: str | None = Field(
        None,
        description="User on an MLflow server with authentication (mlflow/start-server.sh); "
        "exported as MLFLOW_TRACKING_USERNAME at the entry point (tracking.use_credentials).",
    )
    mlflow_tracking_password: SecretStr | None = Field(
        None, description="That user's password; exported as MLFLOW_TRACKING_PASSWORD."
    )
    model_name: str = Field("emotion-classifier", description="Registered model name.")

    edge_health_host: str = Field(
        "127.0.0.1", description="Where the edge service serves /healthz and /metrics."
    )
    edge_health_port: int | None = Field(
        9108,
        ge=0,
        le=65_535,
        description="Port of the edge's /healthz and /metrics; 0 picks a free one; unset "
        "(empty) serves none.",
    )
    api_model_dir: Path | None = Field(
        None,
        description="A local model directory (model.tflite + labels.json) the API serves "
        "instead of pulling models:/<model_name>@champion from the registry.",
    )

    dvc_remote_url: str | None = Field(
        None, description="DVC remote (path or s3://...). Default: the repo's local remote."
    )
    dvc_remote_endpoint_url: str | None = Field(
        None,
        description="Endpoint of an S3-compatible server for an s3:// remote (MinIO, Ceph...). "
        "Credentials: the standard AWS_* variables or profile, read by dvc-s3.",
    )

    search_url: str | None = Field(
        None, description="Base URL of the local image-search stand-in (engine 'local')."
    )
    system_javascript_dir: Path = Field(
        Path("/usr/share/javascript"),
        description="Debian's libjs-* folder: jQuery, Bootstrap 4, Popper and "
        "bootstrap-datepicker copied into the Data Docs so they render offline "
        "(`make system-packages`).",
    )
    data_docs_assets_dir: Path | None = Field(
        None,
        description="The Data Docs assets Debian lacks (bootstrap-table, Font Awesome, Vega...), "
        "fetched pinned by `make data-docs-assets`. Unset: <venv>/share/data-docs-assets.",
    )
    chromium_binary: Path = Path("/usr/bin/chromium")
    chromedriver: Path = Path("/usr/bin/chromedriver")
    download_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts the downloader may fetch even if they resolve to private addresses "
        "(the local stand-in, tests): `host` (every port) or `host:port` (that port only), "
        "comma-separated or a JSON list. Everything else on loopback/private ranges is refused.",
    )
    download_ca_bundle: Path | None = Field(
        None,
        description="PEM file of extra CA certificates the downloader trusts beside the public "
        "roots (a private image host, an intercepting proxy). Certificates are always verified.",
    )

    @field_validator("download_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """`a,b:8080` or `["a", "b:8080"]` from the environment; each entry checked."""
        from emotionops.acquire.guard import parse_allow_entry

        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list ({exc.msg})") from None
            else:
                value = [part for part in (p.strip() for p in text.split(",")) if part]
        if isinstance(value, list):
            for entry in value:
                parse_allow_entry(str(entry))
        return value

    @field_validator("ingest_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty EMOTIONOPS_INGEST_TOKEN= would make `Bearer ` a valid credential."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("EMOTIONOPS_INGEST_TOKEN is empty: unset it or give a real token")
        return value

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> Settings:
        """The MLflow client sends basic auth only when both are set; one alone would
        silently go anonymous and fail later with a bare 401."""
        if (self.mlflow_tracking_username is None) != (self.mlflow_tracking_password is None):
            raise ValueError(
                "set both EMOTIONOPS_MLFLOW_TRACKING_USERNAME and "
                "EMOTIONOPS_MLFLOW_TRACKING_PASSWORD, or neither"
            )
        return self

    @field_validator("ingest_url")
    @classmethod
    def _ingest_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://api.example/ingest)")
        return value

    @model_validator(mode="after")
    def _ingest_needs_a_token_in_production(self) -> Settings:
        """An unauthenticated ingest endpoint would take counts from anyone."""
        if self.environment == "production" and self.ingest_url and self.ingest_token is None:
            raise ValueError(
                "EMOTIONOPS_INGEST_URL is set: production needs EMOTIONOPS_INGEST_TOKEN too"
            )
        return self

    @model_validator(mode="after")
    def _refuse_embedded_defaults_in_production(self) -> Settings:
        if self.environment == "production":
            missing = [
                name
                for name in ("warehouse_url", "mlflow_tracking_uri", "dvc_remote_url")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    "EMOTIONOPS_ENVIRONMENT=production needs explicit "
                    + ", ".join(f"EMOTIONOPS_{m.upper()}" for m in missing)
                )
        return self

    # Derived paths -------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return (self.project_dir / self.data_dir).resolve()

    @property
    def params_path(self) -> Path:
        return (self.project_dir / self.params_file).resolve()

    @property
    def mlflow_store(self) -> Path:
        """Backend store and artifacts of the embedded MLflow server."""
        return self.data_path / "mlflow"

    def resolved_warehouse_url(self) -> str:
        if self.warehouse_url is None and self.warehouse_conn_id:
            raise SettingsError(
                f"EMOTIONOPS_WAREHOUSE_CONN_ID={self.warehouse_conn_id} is an Airflow connection "
                "id: it is resolved by the DAG (plugin emotionops_warehouse), which passes "
                "EMOTIONOPS_WAREHOUSE_URL; outside Airflow set EMOTIONOPS_WAREHOUSE_URL"
            )
        if self.warehouse_url is None:
            return f"sqlite:///{self.data_path / 'warehouse.db'}"
        if self.warehouse_password is None:
            return self.warehouse_url
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(self.warehouse_url)
        except (ArgumentError, ValueError) as exc:
            raise SettingsError(f"EMOTIONOPS_WAREHOUSE_URL is not a database URL: {exc}") from exc
        if url.password is None:
            url = url.set(password=self.warehouse_password.get_secret_value())
        return url.render_as_string(hide_password=False)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; invalid environment values become one clear SettingsError."""
    try:
        return Settings()
    except EnvParseError as exc:  # a value pydantic-settings could not even decode
        raise SettingsError(f"invalid settings: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'EMOTIONOPS_' + str(err['loc'][0]).upper() + ': ' if err['loc'] else ''}"
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
