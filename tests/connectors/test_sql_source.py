"""The SQL source on SQLite, DuckDB, PostgreSQL and MariaDB: windows, id mode, pushdown, hostile names, faults."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Column, DateTime, Double, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.engine import make_url

from agent.runner import Agent, build_source
from config.errors import SourceQueryError, SourceUnavailable
from config.model import AgentConfig, SqlSourceConfig
from connectors.sources.sql import SqlSource
from connectors.sources.sql_pushdown import PushdownPlan
from metrics.fairness import FairnessCounts
from metrics.sketch import CategoryState, HistogramState, reference_edges
from tests.conftest import T0 as AGENT_T0
from tests.conftest import free_port, make_rows, scenario_config
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


# -- a query instead of a table ----------------------------------------------------------------------
REGIONS = [("A", "eu-west", "open"), ("B", "eu-north", "closed :old"), ("C", "us-east", "open")]


def _quoter(url: str) -> Any:
    """The dialect's own identifier quoting, as someone writing the query for that database would quote."""
    engine = create_engine(url)
    quote = engine.dialect.identifier_preparer.quote_identifier
    engine.dispose()
    return quote


def _load_regions(url: str, table: str, rows: list[tuple[str, ...]], key: str = "grp") -> None:
    eng = create_engine(url)
    md = MetaData()
    t = Table(table, md, Column(key, String(5), primary_key=True), Column("region", String(20)),
              Column("note", String(20)))
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(t.insert(), [{key: k, "region": r, "note": n} for k, r, n in rows])
    eng.dispose()


def _region_query(url: str) -> str:
    """The rows of the EU regions still open: a join, a LIKE with %, a literal with a colon, a comment."""
    q = _quoter(url)
    return (f"SELECT p.id, p.ts, p.x, p.colour, p.grp, p.{q(HOSTILE_COL)} AS {q(HOSTILE_COL)}, p.label, r.region\n"
            f"FROM preds p JOIN regions r ON r.grp = p.grp\n"
            f"WHERE r.region LIKE 'eu-%' AND r.note <> 'closed :old'  -- the EU regions still open")


def test_a_query_source_reads_exactly_the_rows_of_its_window_on_every_backend(db_url: str) -> None:
    rows = _rows(600, seed=21)
    _load(db_url, rows, table="preds")
    _load_regions(db_url, "regions", REGIONS)
    query = _region_query(db_url)
    src = SqlSource(SqlSourceConfig.model_validate({"url": db_url, "query": query,
                                                    "watermark": {"column": "id", "kind": "id"}}),
                    timestamp_column="ts")
    try:
        assert src.describe().endswith("#query@sha256:" + hashlib.sha256(query.encode()).hexdigest())
        start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        got = src.read_window(start, end, columns=[*COLS, "region"])
        want = {r["id"] for r in rows if r["grp"] == "A"
                and start.replace(tzinfo=None) <= r["ts"] < end.replace(tzinfo=None)}
        assert want and sorted(got["id"].astype(int)) == sorted(want)  # each row once
        assert set(got["region"]) == {"eu-west"} and HOSTILE_COL in got.columns
        # id mode over the query: every qualifying row once, in id order
        seen: list[int] = []
        last = None
        while not (batch := src.read_after(last, limit=70, columns=["x"])).empty:
            seen.extend(int(i) for i in batch["id"])
            last = src.last_id(batch)
        assert seen == [r["id"] for r in rows if r["grp"] == "A"]
        assert src.max_id() == seen[-1]
        # pushdown over the query counts what the rows say
        frame = src.read_window(start, end, columns=COLS)
        assert dict(src.category_counts("colour", start, end).counts) == \
            dict(CategoryState.from_values(frame["colour"]).counts)
    finally:
        src.close()


def _agent_frames(rng: np.random.Generator, n: int, start: datetime) -> pd.DataFrame:
    frame = make_rows(rng, n, start)
    frame["ts"] = pd.to_datetime(frame["ts"]).dt.floor("s")  # whole seconds: every backend stores them as given
    frame["site"] = rng.choice(["s1", "s2", "s3", "s4"], size=n)
    return frame


SITES = [("s1", "eu-west", "open"), ("s2", "eu-north", "closed :old"), ("s3", "us-east", "open"),
         ("s4", "eu-south", "open")]
OPEN_EU = {"s1", "s4"}


def _site_query(url: str, table: str) -> str:
    q = _quoter(url)
    return (f"SELECT p.id, p.ts, p.x1, p.x2, p.colour, p.{q('group')}, p.score, p.label\n"
            f"FROM {q(table)} p JOIN sites s ON s.site = p.site\n"
            f"WHERE s.region LIKE 'eu-%' AND s.note <> 'closed :old'  -- the EU sites still open")


def _query_agent(tmp: Path, url: str, query: str, reference: dict[str, Any] | None = None) -> Agent:
    cfg = scenario_config(tmp, tmp / "unused.db", f"sqlite:///{tmp / 'state.db'}")
    system = cfg["systems"][0]
    system["source"] = {"type": "sql", "url": url, "query": query}
    if reference is not None:
        system["reference"] = reference
    return Agent(AgentConfig.model_validate(cfg), base_dir=tmp)


def _recorded_ids(agent: Agent, into: list[set[str]]) -> None:
    source = agent.source(agent.cfg.systems[0])
    plain = source.read_window

    def recording(start: Any, end: Any, **kw: Any) -> pd.DataFrame:
        frame = plain(start, end, **kw)
        into.append(set(frame["id"]))
        return frame

    source.read_window = recording  # type: ignore[method-assign]


def test_a_query_source_is_judged_window_after_window_across_a_restart(db_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(31)
    make_rows(rng, 3000, AGENT_T0 - timedelta(days=3), span=timedelta(days=1)).to_parquet(
        tmp_path / "reference.parquet", index=False)
    first = _agent_frames(rng, 600, AGENT_T0)
    # the two rows either side of the windows' boundary, both at an open EU site
    edge = _agent_frames(rng, 2, AGENT_T0)
    boundary = (AGENT_T0 + timedelta(hours=1)).replace(tzinfo=None)
    edge["ts"] = [boundary - timedelta(seconds=1), boundary]
    edge["site"] = "s1"
    second = _agent_frames(rng, 600, AGENT_T0 + timedelta(hours=1))
    engine = create_engine(db_url)
    pd.DataFrame(SITES, columns=["site", "region", "note"]).to_sql("sites", engine, index=False)
    pd.concat([first, edge.iloc[:1]]).to_sql("predictions", engine, index=False)
    engine.dispose()
    query = _site_query(db_url, "predictions")

    judged: list[set[str]] = []
    agent = _query_agent(tmp_path, db_url, query)
    _recorded_ids(agent, judged)
    try:
        one = agent.run_system("scoring", AGENT_T0 + timedelta(hours=1, minutes=1))
    finally:
        agent.close()
    engine = create_engine(db_url)
    pd.concat([edge.iloc[1:], second]).to_sql("predictions", engine, index=False, if_exists="append")
    engine.dispose()
    agent = _query_agent(tmp_path, db_url, query)  # a restarted agent: it resumes at the persisted watermark
    _recorded_ids(agent, judged)
    try:
        two = agent.run_system("scoring", AGENT_T0 + timedelta(hours=2, minutes=1))
        again = agent.run_system("scoring", AGENT_T0 + timedelta(hours=2, minutes=1))
    finally:
        agent.close()

    everything = pd.concat([first, edge, second])
    kept = everything[everything["site"].isin(OPEN_EU)]
    hour = pd.to_datetime(kept["ts"]) < (AGENT_T0 + timedelta(hours=1)).replace(tzinfo=None)
    want = [set(kept.loc[hour, "id"]), set(kept.loc[~hour, "id"])]
    assert edge["id"].iloc[0] in want[0] and edge["id"].iloc[1] in want[1]
    assert judged == want, "each window judged exactly its rows: none skipped, none twice"
    assert [(o.window_start, o.rows) for o in [*one, *two]] == [(AGENT_T0, len(want[0])),
                                                                  (AGENT_T0 + timedelta(hours=1), len(want[1]))]
    assert again == []


def test_a_query_reference_is_read_whole_and_named_by_its_query_in_the_evidence(db_url: str,
                                                                                tmp_path: Path) -> None:
    from agent.reference import read_reference
    from agent.schema import EvidenceRecord

    rng = np.random.default_rng(41)
    ref = _agent_frames(rng, 2400, AGENT_T0 - timedelta(days=3))
    window = _agent_frames(rng, 600, AGENT_T0)
    engine = create_engine(db_url)
    pd.DataFrame(SITES, columns=["site", "region", "note"]).to_sql("sites", engine, index=False)
    ref.to_sql("reference_rows", engine, index=False)
    window.to_sql("predictions", engine, index=False)
    engine.dispose()
    ref_query = _site_query(db_url, "reference_rows") + "\n;\n"  # a trailing semicolon is dropped
    agent = _query_agent(tmp_path, db_url, _site_query(db_url, "predictions"),
                         reference={"type": "sql", "url": db_url, "query": ref_query})
    try:
        system = agent.cfg.systems[0]
        src = build_source(system, "reference", tmp_path, agent.store)
        frame, name = read_reference(src, columns=["id", "x1", "x2", "colour", "group", "score", "label"])
        src.close()
        kept = ref[ref["site"].isin(OPEN_EU)]
        assert sorted(frame["id"]) == sorted(kept["id"])
        [outcome] = agent.run_system("scoring", AGENT_T0 + timedelta(hours=1, minutes=1))
        assert outcome.status in ("ok", "warning", "breach"), outcome.status
        with agent.store.session() as s:
            [run] = [dict(r.payload) for r in s.execute(select(EvidenceRecord).where(
                EvidenceRecord.kind == "check_run")).scalars()]
    finally:
        agent.close()
    url = make_url(db_url).render_as_string(hide_password=True)
    assert name == f"{url}#query@sha256:{hashlib.sha256(ref_query.encode()).hexdigest()}"
    assert run["reference"] == name and run["reference_rows"] == len(kept)
    assert run["rows"] == int(window["site"].isin(OPEN_EU).sum())
    source_query = _site_query(db_url, "predictions").encode()
    assert run["source"] == f"{url}#query@sha256:{hashlib.sha256(source_query).hexdigest()}"
