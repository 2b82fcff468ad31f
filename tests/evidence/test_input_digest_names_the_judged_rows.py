"""Each check run records `input_digest`, the SHA-256 of the rows it judged in a canonical form: the same
window gives the same digest in another process and from another backend (SQLite, PostgreSQL, DuckDB,
Parquet), whatever the row or column order or the dtypes the backend chose; any changed row changes it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, select

from agent.runner import Agent, build_source
from agent.schema import EvidenceRecord
from agent.window_digest import input_digest
from config.loader import load_config
from tests.conftest import T0, Scenario, make_rows
from tests.evidence.conftest import run_hours

WINDOW = (T0, T0 + timedelta(hours=1))


def _frame(n: int = 500) -> pd.DataFrame:
    frame = make_rows(np.random.default_rng(11), n, T0)
    frame.loc[3, "x2"] = None  # a null, which must not read as 0
    return frame


def _window_digest(sc: Scenario, source: dict[str, Any]) -> str:
    cfg = sc.config()
    cfg["systems"][0]["source"] = source
    sc.rewrite(cfg)
    system = load_config(sc.config_path).systems[0]
    src = build_source(system, "source", sc.dir)
    try:
        frame = src.read_window(*WINDOW, columns=Agent._columns(system))
    finally:
        src.close()
    assert len(frame) == 500
    return input_digest(frame, columns=Agent._columns(system), timestamp_column="ts")


def test_the_digest_ignores_order_and_dtypes_but_not_values() -> None:
    frame = _frame()
    digest = input_digest(frame, timestamp_column="ts")
    assert len(digest) == 64
    assert input_digest(frame.sample(frac=1, random_state=2)[list(reversed(frame.columns))],
                        timestamp_column="ts") == digest
    variant = frame.copy()
    variant["label"] = variant["label"].astype("float64")  # a backend that returns ints as floats
    variant["colour"] = variant["colour"].astype("category")
    variant["ts"] = pd.to_datetime(variant["ts"]).dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    assert input_digest(variant, timestamp_column="ts") == digest
    as_text = frame.copy()
    as_text["ts"] = [t.isoformat() + "Z" for t in frame["ts"]]  # a CSV or JSON source's timestamps
    assert input_digest(as_text, timestamp_column="ts") == digest

    for column, value in (("x1", frame.loc[7, "x1"] + 1e-12), ("colour", "purple"),
                          ("label", 1 - frame.loc[7, "label"]),
                          ("ts", frame.loc[7, "ts"] + pd.Timedelta(microseconds=1)), ("x2", 0.0)):
        changed = frame.copy()
        changed.loc[7 if column != "x2" else 3, column] = value
        assert input_digest(changed, timestamp_column="ts") != digest, column
    assert input_digest(frame.iloc[:-1], timestamp_column="ts") != digest
    assert input_digest(frame, columns=["x1", "x2"]) != digest
    assert input_digest(pd.DataFrame({"x": [0.0, 1.5]})) == input_digest(pd.DataFrame({"x": [-0.0, 1.5]}))


def test_the_digest_is_the_same_in_another_process(tmp_path: Any) -> None:
    frame = _frame()
    frame.to_parquet(tmp_path / "w.parquet", index=False)
    code = ("import pandas as pd; from agent.window_digest import input_digest; "
            f"print(input_digest(pd.read_parquet({str(tmp_path / 'w.parquet')!r}), timestamp_column='ts'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=str(tmp_path.cwd()))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == input_digest(frame, timestamp_column="ts")


@pytest.mark.integration
def test_the_same_window_from_four_backends_has_one_digest(scenario: Scenario, pg_url: str) -> None:
    frame = _frame()
    scenario.write(frame)
    digests = {"sqlite": _window_digest(scenario, {"type": "sql", "url": f"sqlite:///{scenario.db}",
                                                   "table": "predictions"})}
    frame.to_parquet(scenario.dir / "window.parquet", index=False)
    digests["parquet"] = _window_digest(scenario, {"type": "file", "path": "window.parquet"})
    duck = create_engine(f"duckdb:///{scenario.dir / 'window.duckdb'}")
    frame.sample(frac=1, random_state=5).to_sql("predictions", duck, index=False)
    duck.dispose()
    digests["duckdb"] = _window_digest(scenario, {"type": "sql", "url": f"duckdb:///{scenario.dir / 'window.duckdb'}",
                                                  "table": "predictions"})
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    frame.sample(frac=1, random_state=9).to_sql("predictions", engine, index=False)
    engine.dispose()
    digests["postgresql"] = _window_digest(scenario, {"type": "sql", "url": pg_url, "table": "predictions"})
    assert len(set(digests.values())) == 1, digests


def test_check_runs_record_the_digest_and_a_changed_row_changes_it(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0, 0.0])
    with agent.store.session() as s:
        runs = [r.payload for r in s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == "check_run")
                                             .order_by(EvidenceRecord.seq)).scalars()]
    agent.close()
    assert [len(r["input_digest"]) for r in runs] == [64, 64] and runs[0]["input_digest"] != runs[1]["input_digest"]
    system = load_config(scenario.config_path).systems[0]
    src = build_source(system, "source", scenario.dir)
    expected = input_digest(src.read_window(*WINDOW, columns=Agent._columns(system)),
                            columns=Agent._columns(system), timestamp_column="ts")
    src.close()
    assert runs[0]["input_digest"] == expected

    def rejudge(state: str) -> str:
        """The first window judged again by a fresh agent with a state store of its own."""
        cfg = scenario.config()
        cfg["agent"]["state_url"] = f"sqlite:///{scenario.dir / state}"
        scenario.rewrite(cfg)
        fresh = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
        fresh.run_system("scoring", T0 + timedelta(hours=1))
        with fresh.store.session() as s:
            rec = s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == "check_run")).scalars().one()
        fresh.close()
        return str(rec.payload["input_digest"])

    assert rejudge("again.db") == runs[0]["input_digest"]
    con = sqlite3.connect(scenario.db)
    con.execute("UPDATE predictions SET x1 = x1 + 0.5 WHERE rowid = (SELECT min(rowid) FROM predictions)")
    con.commit()
    con.close()
    assert rejudge("changed.db") != runs[0]["input_digest"]
