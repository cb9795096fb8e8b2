"""Connection failures end fast with a clear WarehouseError, never a hang.

A refused port, and a "blackhole": a socket that accepts the TCP connection (the kernel
completes the handshake for a listening socket) but never says a word. python-oracledb
(thin) has no timeout for the second case; `db.connect` bounds it. pytest-timeout is only a
guard here: the assertions are on the error and the elapsed time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emotionops.warehouse import WarehouseError, WarehouseTimeout, connect

TIMEOUT_S = 2.0
SECRET = "s3cr3t-pw"


@pytest.fixture()
def blackhole() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accept(), never answer
        yield sock.getsockname()[1]


@pytest.fixture()
def refused() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


URLS = {
    "oracle": "oracle+oracledb://scott:{pw}@127.0.0.1:{port}/?service_name=FREEPDB1",
    "oracle-sid": "oracle+oracledb://scott:{pw}@127.0.0.1:{port}/ORCL",
    "postgresql": "postgresql+psycopg://app:{pw}@127.0.0.1:{port}/wh",
}


def _connect_error(url: str) -> tuple[WarehouseError, float]:
    start = time.monotonic()
    with pytest.raises(WarehouseError) as err:
        connect(url, connect_timeout_s=TIMEOUT_S)
    return err.value, time.monotonic() - start


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", list(URLS))
def test_a_refused_port_fails_fast_and_clearly(backend: str, refused: int) -> None:
    error, elapsed = _connect_error(URLS[backend].format(pw=SECRET, port=refused))
    assert elapsed < TIMEOUT_S + 10, elapsed  # bounded (slack for a busy machine)
    message = str(error)
    assert message.startswith("cannot connect to the warehouse at "), message
    assert f"127.0.0.1:{refused}" in message and SECRET not in message and "***" in message
    assert "refused" in message.lower() or "DPY-6005" in message, message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", list(URLS))
def test_a_port_that_never_answers_times_out_clearly(backend: str, blackhole: int) -> None:
    error, elapsed = _connect_error(URLS[backend].format(pw=SECRET, port=blackhole))
    assert TIMEOUT_S - 0.5 <= elapsed < TIMEOUT_S + 10, elapsed
    message = str(error)
    assert f"127.0.0.1:{blackhole}" in message and SECRET not in message, message
    if backend.startswith("oracle"):
        assert isinstance(error, WarehouseTimeout)  # our bound: the driver would hang
        assert "no answer from the warehouse at oracle+oracledb://scott:***@" in message
        assert f"within {TIMEOUT_S + 1:g} s" in message
    else:
        assert "timeout" in message.lower(), message  # psycopg's own connect_timeout


@pytest.mark.timeout(120)
def test_the_cli_exits_cleanly_when_oracle_never_answers(blackhole: int, tmp_path: Path) -> None:
    """The abandoned connect thread must not keep the process alive: the CLI exits 2."""
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "params.yaml").write_text((repo / "params.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    env.update(
        EMOTIONOPS_PROJECT_DIR=str(tmp_path),
        EMOTIONOPS_WAREHOUSE_URL=URLS["oracle"].format(pw=SECRET, port=blackhole),
        EMOTIONOPS_WAREHOUSE_CONNECT_TIMEOUT_S="1",
        COLUMNS="200",
    )
    start = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("emotionops")), "warehouse", "init"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "no answer from the warehouse" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr
    assert time.monotonic() - start < 30


def test_unsupported_or_malformed_urls() -> None:
    with pytest.raises(WarehouseError, match="unsupported warehouse backend 'mysql'"):
        connect("mysql://u:p@127.0.0.1/x")
    with pytest.raises(WarehouseError, match="not a database URL"):
        connect("not a url")
