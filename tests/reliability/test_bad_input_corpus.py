"""A corpus of hostile inputs: each gets a clear error or a data-quality finding, never a crash or a
traceback, and nothing already accepted is lost."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from agent.runner import Agent
from config.errors import ConfigError
from config.loader import load_config, parse_config
from tests.conftest import T0, Scenario, make_rows


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_clear_line(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip(), "a reason is given"


# -- configuration ------------------------------------------------------------------------------------

def _mutations() -> list[tuple[str, Any]]:
    def sys0(f: Any) -> Any:
        return lambda c: f(c["systems"][0])

    return [
        ("not a mapping", lambda c: ["systems"]),
        ("no systems", lambda c: {"agent": c["agent"]}),
        ("empty systems", lambda c: {**c, "systems": []}),
        ("systems not a list", lambda c: {**c, "systems": {"a": 1}}),
        ("bad id", sys0(lambda s: s.update(id="Has Spaces/.."))),
        ("id traversal", sys0(lambda s: s.update(id="../../etc"))),
        ("negative window", sys0(lambda s: s["window"].update(size="-1h"))),
        ("zero window", sys0(lambda s: s["window"].update(size="0s"))),
        ("window as list", sys0(lambda s: s["window"].update(size=[1]))),
        ("threshold string", sys0(lambda s: s["checks"]["fairness"].update(threshold="high"))),
        ("unknown check", sys0(lambda s: s["checks"].update(astrology={}))),
        ("unknown source type", sys0(lambda s: s.update(source={"type": "ftp", "path": "x"}))),
        ("sql without table", sys0(lambda s: s.update(source={"type": "sql", "url": "sqlite://"}))),
        ("sql table and query", sys0(lambda s: s["source"].update(query="SELECT 1"))),
        ("bad cron", sys0(lambda s: s.update(schedule={"cron": "every day"}))),
        ("feature also label", sys0(lambda s: s["schema"]["features"].update(label="numerical"))),
        ("bad feature kind", sys0(lambda s: s["schema"]["features"].update(x1="text"))),
        ("huge string", sys0(lambda s: s.update(name="x" * 1_000_000, id="y" * 10_000))),
        ("duplicate systems", lambda c: {**c, "systems": c["systems"] * 2}),
        ("retention too short", lambda c: {**c, "agent": {**c["agent"], "evidence": {"retention_days": 30}}}),
        ("port out of range", lambda c: {**c, "agent": {**c["agent"], "server": {"port": -1}}}),
        ("token without value", lambda c: {**c, "agent": {**c["agent"], "tokens": [{"name": "x"}]}}),
        ("bad scope", lambda c: {**c, "agent": {**c["agent"], "tokens": [{"name": "x", "value": "v",
                                                                             "scopes": ["root"]}]}}),
        ("unknown sink type", lambda c: {**c, "sinks": {"x": {"type": "carrier-pigeon"}}}),
        ("bad env reference", sys0(lambda s: s.update(name="${1BAD}"))),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_config_is_a_config_error_with_paths(scenario: Scenario, name: str, mutate: Any) -> None:
    cfg = scenario.config()
    bad = mutate(cfg)
    with pytest.raises(ConfigError) as err:
        parse_config(cfg if bad is None else bad, base_dir=scenario.dir, env={})
    assert err.value.problems, name
    assert all(len(str(p)) < 5000 for p in err.value.problems), "a problem is a line, not the whole input"


def test_config_validate_never_tracebacks_on_garbage(tmp_path: Path) -> None:
    cases = {"binary.yaml": b"\x00\xff\xfe garbage", "anchors.yaml": b"a: &a [*a]\nsystems: *a\n",
             "tabs.yaml": b"systems:\n\t- id: x\n", "deep.yaml": b"systems: " + b"[" * 5000 + b"]" * 5000}
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        r = _cli("config", "validate", str(p))
        assert r.returncode == 2, name
        _one_clear_line(r)
    r = _cli("config", "validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2
    _one_clear_line(r)


# -- files given to compare ------------------------------------------------------------------------------

def _good(tmp: Path) -> Path:
    p = tmp / "good.csv"
    make_rows(np.random.default_rng(1), 300, T0).drop(columns=["id", "ts"]).to_csv(p, index=False)
    return p


def _hostile_files(tmp: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}

    def w(name: str, data: bytes) -> None:
        out[name] = tmp / name
        out[name].write_bytes(data)

    w("empty.csv", b"")
    w("header-only.csv", b"x1,x2,colour,group,score,label\n")
    w("binary.csv", bytes(range(256)) * 40)
    w("not-utf8.csv", "x1,colour\n1,\xe9t\xe9\n".encode("latin-1"))
    w("ragged.csv", b"x1,x2\n1,2,3,4\n5\n")
    w("truncated.parquet", b"PAR1\x00\x00garbage")
    w("bad.jsonl", b'{"x1": 1}\n{"x1": \n')
    w("array.jsonl", b"[1,2,3]\n")
    w("unknown.xlsx", b"PK\x03\x04")
    return out


def test_unreadable_files_exit_2_with_one_line(tmp_path: Path) -> None:
    good = _good(tmp_path)
    for name, path in _hostile_files(tmp_path).items():
        r = _cli("compare", str(good), str(path))
        assert r.returncode in (0, 1, 2), name
        _one_clear_line(r) if r.returncode == 2 else None
        assert "Traceback" not in r.stderr, (name, r.stderr)


def _frame_cases(tmp: Path) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(2)
    base = make_rows(rng, 400, T0).drop(columns=["id", "ts"])
    return {
        "nan-and-inf": base.assign(x1=np.where(rng.random(400) < 0.3, np.nan, base["x1"]),
                                   x2=np.where(rng.random(400) < 0.1, np.inf, base["x2"])),
        "all-nan": base.assign(x1=np.nan),
        "strings-in-numeric": base.assign(x1=base["x1"].astype(object).where(rng.random(400) < 0.8, "oops")),
        "huge-strings": base.assign(colour=["x" * 200_000 if i % 50 == 0 else c for i, c in enumerate(base["colour"])]),
        "10k-categories": base.assign(colour=[f"c{i}" for i in range(400)]).pipe(
            lambda d: pd.concat([d] * 25, ignore_index=True).assign(colour=[f"c{i}" for i in range(10_000)])),
        "constant": base.assign(x1=1.0, colour="red"),
        "one-row": base.head(1),
        "mixed-types": base.assign(colour=[1, "a", 2.5, None] * 100),
        "bool-score": base.assign(score=base["score"] > 0.5),
    }


@pytest.mark.parametrize("case", ["nan-and-inf", "all-nan", "strings-in-numeric", "huge-strings", "10k-categories",
                                  "constant", "one-row", "mixed-types", "bool-score"])
def test_hostile_values_never_crash_compare(tmp_path: Path, case: str) -> None:
    good = _good(tmp_path)
    df = _frame_cases(tmp_path)[case]
    path = tmp_path / f"{case}.parquet"
    try:
        df.to_parquet(path, index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        path = tmp_path / f"{case}.csv"
        df.to_csv(path, index=False)
    r = _cli("compare", str(good), str(path), "--prediction", "score", "--label", "label", "--sensitive", "group",
             "--format", "json")
    assert r.returncode in (0, 1, 2), r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode != 2:
        json.loads(r.stdout)


def test_very_wide_header_is_handled(tmp_path: Path) -> None:
    wide = tmp_path / "wide.parquet"
    table = pa.table({f"c{i}": pa.array([1.0, 2.0]) for i in range(20_000)})
    pq.write_table(table, wide)
    r = _cli("compare", str(wide), str(wide), "--format", "json", timeout=300)
    assert r.returncode in (0, 2)
    assert "Traceback" not in r.stderr


def _million_column_csv(path: Path) -> None:
    n = 1_000_000
    path.write_text(",".join(f"c{i}" for i in range(n)) + "\n" + ",".join("1" for _ in range(n)) + "\n")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_header_of_millions_of_columns_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    wide = tmp_path / f"wide.{kind}"
    if kind == "csv":
        _million_column_csv(wide)
    else:
        wide.write_text(json.dumps({f"c{i}": 1 for i in range(1_000_000)}) + "\n")
    r = _cli("compare", str(wide), str(wide), timeout=60)  # it used to run for minutes and take gigabytes
    assert r.returncode == 2, r.stderr
    _one_clear_line(r)
    assert "has 1,000,000 columns, more than the 20,000" in r.stderr


def test_a_file_with_millions_of_columns_in_a_watched_folder_is_a_finding_and_the_rest_is_judged(
        scenario: Scenario) -> None:
    live = scenario.dir / "live"
    live.mkdir()
    cfg = scenario.config()
    cfg["systems"][0]["source"] = {"type": "file", "path": str(live / "*.csv")}
    scenario.rewrite(cfg)
    make_rows(scenario.rng, 400, T0).to_csv(live / "a.csv", index=False)
    _million_column_csv(live / "b.csv")  # a broken export lands beside the good one
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        (outcome,) = agent.run_system("scoring", T0 + timedelta(hours=1))
        assert outcome.status != "failed" and outcome.rows == 400, "the good file is judged"
        bad = [f for f in outcome.results["data_quality"]["findings"] if f["kind"] == "bad_record"]
        assert len(bad) == 1 and "b.csv" in json.dumps(bad) and "1,000,000 columns" in json.dumps(bad)
    finally:
        agent.close()


# -- data reaching the running agent ---------------------------------------------------------------------

def test_wrong_types_in_the_source_are_findings_not_failures(scenario: Scenario) -> None:
    rows = make_rows(scenario.rng, 400, T0)
    rows["x1"] = rows["x1"].astype(object)
    rows.loc[rows.index[:40], "x1"] = "not-a-number"
    rows.loc[rows.index[40:60], "colour"] = "ultraviolet"
    scenario.write(rows)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    (outcome,) = agent.run_system("scoring", T0 + timedelta(hours=1))
    assert outcome.status != "failed"
    findings = {(f["kind"], f["column"]) for f in outcome.results["data_quality"]["findings"]}
    assert ("type_error", "x1") in findings and ("unseen_category", "colour") in findings
    agent.close()


def test_hostile_identifiers_are_quoted_not_executed(scenario: Scenario) -> None:
    scenario.hour(T0)
    cfg = scenario.config()
    cfg["systems"][0]["source"]["table"] = 'predictions"; DROP TABLE predictions; --'
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    (outcome,) = agent.run_system("scoring", T0 + timedelta(hours=1))
    assert outcome.status == "failed" and "no such table" in (outcome.error or "")
    agent.close()
    con = sqlite3.connect(scenario.db)
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 400, "nothing was dropped"
    con.close()


def test_hostile_feature_names_cannot_escape_the_ticket_folder(scenario: Scenario) -> None:
    rows = make_rows(scenario.rng, 400, T0, shift=3.0).rename(columns={"x1": "../../../escape"})
    ref = pd.read_parquet(scenario.dir / "reference.parquet").rename(columns={"x1": "../../../escape"})
    ref.to_parquet(scenario.dir / "reference.parquet", index=False)
    scenario.write(rows)
    cfg = scenario.config()
    s = cfg["systems"][0]
    s["schema"]["features"] = {"../../../escape": "numerical", "x2": "numerical", "colour": "categorical"}
    s["checks"]["drift"]["drift_share"] = 0.3
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.run_system("scoring", T0 + timedelta(hours=1))
    agent.deliver(T0 + timedelta(hours=1))
    agent.close()
    tickets = scenario.dir / "tickets"
    written = [p.resolve() for p in scenario.dir.rglob("*.md")]
    assert written and all(p.parent == tickets.resolve() for p in written)
    assert not (scenario.dir.parent / "escape").exists()


def test_a_config_that_fails_to_load_changes_nothing_already_recorded(scenario: Scenario) -> None:
    scenario.hour(T0)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.run_system("scoring", T0 + timedelta(hours=1))
    agent.close()
    before = (scenario.dir / "state.db").read_bytes()
    bad = scenario.config()
    bad["systems"][0]["window"]["size"] = "forever"
    (scenario.dir / "bad.yaml").write_text(yaml.safe_dump(bad))
    r = _cli("check", "--config", str(scenario.dir / "bad.yaml"))
    assert r.returncode == 2
    _one_clear_line(r)
    assert (scenario.dir / "state.db").read_bytes() == before
