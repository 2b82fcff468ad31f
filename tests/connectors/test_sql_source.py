"""The SQL source on SQLite, DuckDB, PostgreSQL and MariaDB: windows, id mode, pushdown, hostile names, faults."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Column, DateTime, Double, Integer, MetaData, String, Table, create_engine

from config.errors import SourceQueryError, SourceUnavailable
from config.model import SqlSourceConfig
from connectors.sources.sql import SqlSource
from connectors.sources.sql_pushdown import PushdownPlan
from metrics.fairness import FairnessCounts
from metrics.sketch import CategoryState, HistogramState, reference_edges
from tests.conftest import free_port
from tests.connectors.conftest import fresh_database

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOSTILE_TABLE = 'pred "log"; DROP TABLE x; --'
HOSTILE_COL = 'sc"ore; --'


def _rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({
            "id": i + 1,
            # ids grow with insertion order, timestamps do not: a late row carries an early time
            "ts": (T0 + timedelta(minutes=int(rng.integers(0, 180)))).replace(tzinfo=None),
            "x": float(rng.normal()) if i % 17 else None,
            "colour": str(rng.choice(["red", "green", "blue"])) if i % 13 else None,
            "grp": str(rng.choice(["A", "B", "C"])),
            HOSTILE_COL: float(np.round(rng.random(), 6)),
            "label": int(rng.random() < 0.4),
        })
    return out


def _load(url: str, rows: list[dict[str, Any]], table: str = HOSTILE_TABLE) -> None:
    eng = create_engine(url)
    md = MetaData()
    t = Table(table, md, Column("id", Integer, primary_key=True, autoincrement=False), Column("ts", DateTime),
              Column("x", Double), Column("colour", String(10)), Column("grp", String(5)),
              Column(HOSTILE_COL, Double), Column("label", Integer))
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(t.insert(), rows)
    eng.dispose()


def _source(url: str, **kw: Any) -> SqlSource:
    cfg = SqlSourceConfig.model_validate({"url": url, "table": HOSTILE_TABLE, **kw})
    return SqlSource(cfg, timestamp_column="ts")


COLS = ["id", "ts", "x", "colour", "grp", HOSTILE_COL, "label"]


def test_window_read_with_hostile_table_and_column_names_on_every_backend(db_url: str) -> None:
    rows = _rows(300)
    _load(db_url, rows)
    src = _source(db_url)
    try:
        start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        got = src.read_window(start, end, columns=COLS)
        want = {r["id"] for r in rows if start.replace(tzinfo=None) <= r["ts"] < end.replace(tzinfo=None)}
        assert set(got["id"].astype(int)) == want
        assert HOSTILE_COL in got.columns
        # the table survived: the name was quoted, not spliced into the statement
        assert len(src.read_all(columns=["id"])) == 300
    finally:
        src.close()


def test_id_mode_reads_every_row_once_in_id_order_across_restarts(db_url: str) -> None:
    rows = _rows(250)
    _load(db_url, rows)
    seen: list[int] = []
    last = None
    while True:
        src = _source(db_url, watermark={"column": "id", "kind": "id"})  # a new source: a restarted agent
        batch = src.read_after(last, limit=60, columns=["x", "grp"])
        src_last = src.last_id(batch)
        src.close()
        if batch.empty:
            break
        seen.extend(int(i) for i in batch["id"])
        last = src_last
    assert seen == list(range(1, 251))


def test_id_mode_is_refused_without_an_id_watermark(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _load(url, _rows(5))
    with pytest.raises(SourceQueryError, match="watermark"):
        _source(url).read_after(None, limit=10, columns=["x"])


def test_pushdown_counts_equal_the_in_process_path_on_every_backend(db_url: str) -> None:
    rows = _rows(2000, seed=11)
    _load(db_url, rows)
    src = _source(db_url)
    try:
        start, end = T0, T0 + timedelta(hours=2)
        frame = src.read_window(start, end, columns=COLS)
        ref = np.random.default_rng(1).normal(size=5000)
        edges = reference_edges(ref, bins=20)

        hist = src.histogram("x", edges, start, end)
        local = HistogramState.from_values(edges, pd.to_numeric(frame["x"]).to_numpy(dtype=float))
        assert hist.counts.tolist() == local.counts.tolist()
        assert hist.minimum == local.minimum and hist.maximum == local.maximum
        np.testing.assert_allclose([float(s) for s in hist.sums], [float(s) for s in local.sums], rtol=1e-9,
                                   atol=1e-9)
        assert hist.std() == pytest.approx(local.std(), rel=1e-9)

        cats = src.category_counts("colour", start, end)
        assert dict(cats.counts) == dict(CategoryState.from_values(frame["colour"]).counts)

        for threshold in (0.5, None):
            pushed = src.fairness_counts(sensitive=["grp"], prediction=HOSTILE_COL if threshold else "label",
                                         label="label", threshold=threshold, start=start, end=end)
            here = FairnessCounts.from_arrays(y_pred=frame[HOSTILE_COL if threshold else "label"],
                                              y_true=frame["label"], sensitive=frame[["grp"]], threshold=threshold)
            assert pushed.groups == here.groups
            assert pushed.counts.tolist() == here.counts.tolist()
            assert pushed.dropped == here.dropped
        inter = src.fairness_counts(sensitive=["grp", "colour"], prediction=HOSTILE_COL, threshold=0.5,
                                    start=start, end=end)
        here = FairnessCounts.from_arrays(y_pred=frame[HOSTILE_COL], sensitive=frame[["grp", "colour"]],
                                          threshold=0.5)
        assert inter.groups == here.groups and inter.counts.tolist() == here.counts.tolist()
        assert "(missing)" in "".join(inter.groups)
    finally:
        src.close()


def test_values_on_bin_edges_and_outside_them_land_in_the_same_slots_as_numpy(db_url: str) -> None:
    url = db_url
    edges = np.array([0.0, 1.0, 2.0])
    values = [-5.0, 0.0, 0.5, 1.0, 2.0, 2.5]
    if url.startswith(("postgresql", "duckdb")):
        values += [float("nan"), float("inf"), float("-inf")]  # stored there; left out as in process
    rows = [{"id": i, "ts": T0.replace(tzinfo=None), "x": v, "colour": "a", "grp": "A", HOSTILE_COL: 0.1,
             "label": 0} for i, v in enumerate(values)]
    _load(url, rows)
    rows.append({"id": len(rows), "ts": T0.replace(tzinfo=None), "x": None, "colour": "a", "grp": "A",
                 HOSTILE_COL: 0.1, "label": 0})
    _load(url, rows[-1:], table=HOSTILE_TABLE)
    src = _source(url)
    pushed = src.histogram("x", edges)
    local = HistogramState.from_values(edges, values)
    assert pushed.counts.tolist() == local.counts.tolist()
    assert (pushed.minimum, pushed.maximum) == (local.minimum, local.maximum)
    # what data quality counts: NULL (and NaN, which pandas reads as missing) and the infinities
    summary = src.summarise_window(None, None, PushdownPlan(numerical={"x": edges})).columns["x"]
    stored_nan = url.startswith(("postgresql", "duckdb"))
    assert (summary.missing, summary.non_finite) == ((2, 2) if stored_nan else (1, 0))
    # 0.0 and 0.5 share a slot (and 1.0 and 2.0 the closed top one): the values are not all known
    assert summary.values is None and summary.distinct_at_least == 6
    single = src.summarise_window(None, None, PushdownPlan(numerical={"x": np.array([-6.0, -1.0, 0.2, 0.7, 1.5, 2.2,
                                                                                       3.0])})).columns["x"]
    assert single.values is not None, "one value per slot: the exact value counts come back"
    assert dict(single.values.counts) == {v: 1 for v in values if np.isfinite(v)}
    src.close()


def test_a_source_that_is_down_fails_fast_as_unavailable() -> None:
    port = free_port()  # nothing listens there
    src = SqlSource(SqlSourceConfig.model_validate({
        "url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", "table": "t", "connect_timeout_s": 2}),
        timestamp_column="ts")
    t = time.monotonic()
    with pytest.raises(SourceUnavailable):
        src.read_window(T0, T0 + timedelta(hours=1), columns=["x"])
    assert time.monotonic() - t < 10


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_slow_query_is_cut_at_the_query_timeout_and_reported_unavailable(backend: str, tmp_path: Path) -> None:
    gen = fresh_database(backend, tmp_path)
    url = next(gen)
    try:
        _load(url, _rows(10))
        sleep = "pg_sleep(30)" if backend == "postgresql" else "SLEEP(30)"
        cfg = SqlSourceConfig.model_validate({"url": url, "query": f"SELECT 1 AS one FROM (SELECT {sleep} AS z) s",
                                              "query_timeout_s": 2})
        src = SqlSource(cfg, timestamp_column=None)
        t = time.monotonic()
        with pytest.raises(SourceUnavailable):
            src.read_all(columns=["one"])
        assert time.monotonic() - t < 15
        src.close()
    finally:
        gen.close()


def test_a_wrong_table_is_a_query_error_not_an_outage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _load(url, _rows(3))
    src = SqlSource(SqlSourceConfig.model_validate({"url": url, "table": "nope"}), timestamp_column="ts")
    with pytest.raises(SourceQueryError):
        src.read_window(T0, T0 + timedelta(hours=1), columns=["x"])


def test_wrong_types_reach_the_agent_as_they_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    _load(url, _rows(5))
    con = sqlite3.connect(tmp_path / "t.db")
    with con:
        # SQLite keeps what it was given, as a logger writing through a loose client would
        con.execute(f'UPDATE "{HOSTILE_TABLE.replace(chr(34), chr(34) * 2)}" SET x = ? WHERE id = 3', ("not a number",))
    con.close()
    frame = _source(url).read_all(columns=["x"])
    assert "not a number" in frame["x"].tolist()


def test_one_window_of_aggregates_runs_concurrently_and_matches_the_single_queries(db_url: str) -> None:
    _load(db_url, _rows(800, seed=3))
    src = _source(db_url, pushdown_concurrency=3)
    try:
        start, end = T0, T0 + timedelta(hours=3)
        edges = np.linspace(-3, 3, 13)
        plan = PushdownPlan(numerical={"x": edges, HOSTILE_COL: np.linspace(0, 1, 5)},
                            categorical=["colour", "grp"], fairness=[["grp"], ["grp", "colour"]],
                            prediction=HOSTILE_COL, label="label", threshold=0.5)
        agg = src.summarise_window(start, end, plan)
        frame = src.read_window(start, end, columns=COLS)
        assert agg.rows == len(frame)
        alone = src.histogram("x", edges, start, end)
        x = agg.columns["x"]
        assert x.histogram is not None and x.histogram.counts.tolist() == alone.counts.tolist()
        assert x.missing == int(frame["x"].isna().sum())
        score = agg.columns[HOSTILE_COL].histogram
        assert score is not None and score.counts.tolist() == HistogramState.from_values(
            np.linspace(0, 1, 5), frame[HOSTILE_COL].to_numpy(dtype=float)).counts.tolist()
        grp = agg.columns["grp"].categories
        assert grp is not None and dict(grp.counts) == dict(CategoryState.from_values(frame["grp"]).counts)
        assert agg.columns["colour"].missing == int(frame["colour"].isna().sum())
        here = FairnessCounts.from_arrays(y_pred=frame[HOSTILE_COL], y_true=frame["label"],
                                          sensitive=frame[["grp", "colour"]], threshold=0.5)
        assert agg.fairness["grp+colour"].groups == here.groups
        assert agg.fairness["grp+colour"].counts.tolist() == here.counts.tolist()
        alone_fair = FairnessCounts.from_arrays(y_pred=frame[HOSTILE_COL], y_true=frame["label"],
                                                sensitive=frame[["grp"]], threshold=0.5)
        assert agg.fairness["grp"].counts.tolist() == alone_fair.counts.tolist()
    finally:
        src.close()


def test_the_digest_of_a_windows_aggregates_names_exactly_what_was_judged(db_url: str) -> None:
    from agent.window_digest import aggregates_digest

    _load(db_url, _rows(400, seed=9))
    plan = PushdownPlan(numerical={"x": np.linspace(-3, 3, 13)}, categorical=["colour", "grp"],
                        fairness=[["grp"]], prediction=HOSTILE_COL, label="label", threshold=0.5)
    start, end = T0, T0 + timedelta(hours=3)
    first = aggregates_digest(_source(db_url).summarise_window(start, end, plan))
    # another connection, another concurrency (so another order of statements and rows): the same digest
    assert aggregates_digest(_source(db_url, pushdown_concurrency=1).summarise_window(start, end, plan)) == first
    _load(db_url, [{**_rows(1, seed=10)[0], "id": 10_000, "ts": T0.replace(tzinfo=None)}])
    assert aggregates_digest(_source(db_url).summarise_window(start, end, plan)) != first
