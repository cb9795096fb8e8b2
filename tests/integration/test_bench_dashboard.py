"""bench/dashboard_queries.py: its seeded rows keep the warehouse's invariants, and a tiny run
on SQLite prints both tables (requests: events vs rollup; ingest cost), the verdicts and the
CPU (it stops with an error if the rollup and the events disagree on a request)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from _bench import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("dashboard_queries")


def test_rows_are_edge_shaped(bench) -> None:
    rows = bench.make_rows(20_000)
    assert 19_000 <= len(rows) <= 21_000
    keys = {r[:3] + r[6:7] for r in rows}  # (camera, window_start, label, model_version)
    assert len(keys) == len(rows)
    faces, tracks = defaultdict(int), {}
    for camera, start, _label, _s, n, _c, version, _obs, t in rows:
        faces[camera, start, version] += n
        assert tracks.setdefault((camera, start, version), t) == t  # repeated per label row
    assert faces == tracks  # each track holds one label per window and model
    versions = defaultdict(set)
    for camera, start, *_rest in rows:
        versions[camera, start].add(_rest[4])
    assert any(len(v) == 2 for v in versions.values())  # a hot swap inside one window


def test_tiny_run_prints_the_table(bench, capsys) -> None:
    assert bench.main(["--rows", "3000", "--repeat", "1", "--backends", "sqlite"]) == 0
    out = capsys.readouterr().out
    assert "all cameras, day, full range" in out and "events / rollup" in out
    assert "sqlite, all cameras, hour, 1 day: the rollup is" in out
    assert "upsert + rollup ms (now)" in out and "migration 6's backfill" in out
    assert "CPU: " in out
