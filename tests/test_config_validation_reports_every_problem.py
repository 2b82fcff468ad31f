"""Bad configuration: every problem at once, each with its path; secrets from env and files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.errors import ConfigError
from config.loader import load_config, parse_config
from tests.conftest import Scenario


def test_every_problem_is_reported_with_its_path(scenario: Scenario) -> None:
    cfg = scenario.config()
    s = cfg["systems"][0]
    s["role"] = "seller"  # not a role
    s["window"]["size"] = "soon"  # not a duration
    s["owner"].pop("contact")  # required
    s["checks"]["drift"]["treshold"] = 0.1  # typo: unknown key
    s["schedule"] = {"every": "1h", "cron": "* * * * *"}  # both
    cfg["agent"]["server"] = {"port": 70000}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir)
    paths = {p.path for p in err.value.problems}
    assert {
        "systems.0.role",
        "systems.0.window.size",
        "systems.0.owner.contact",
        "systems.0.checks.drift.treshold",
        "systems.0.schedule",
        "agent.server.port",
    } <= paths
    assert len(err.value.problems) >= 6


def test_cross_field_problems_are_listed_separately(scenario: Scenario) -> None:
    cfg = scenario.config()
    s = cfg["systems"][0]
    s["eu_ai_act_high_risk"] = True  # but risk_tier is limited
    s["checks"]["fairness"]["sensitive"] = ["age"]  # not declared sensitive
    s["incidents"] = {"sinks": ["jira"]}  # no such sink
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir)
    messages = [str(p) for p in err.value.problems]
    assert any("risk_tier" in m for m in messages)
    assert any("'age'" in m for m in messages)
    assert any("jira" in m for m in messages)


def test_env_and_file_secrets_are_interpolated(scenario: Scenario, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-from-file\n")
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [
        {"name": "ops", "value": f"${{file:{secret}}}", "scopes": ["operate"]},
        {"name": "ci", "value": "${CI_TOKEN}"},
        {"name": "dflt", "value": "${NOPE_UNSET:-fallback-0123456789}"},
    ]
    loaded = parse_config(cfg, base_dir=scenario.dir, env={"CI_TOKEN": "from-env-0123456789"})
    values = [t.value.get_secret_value() for t in loaded.agent.tokens]
    assert values == ["s3cret-from-file", "from-env-0123456789", "fallback-0123456789"]
    assert "s3cret" not in repr(loaded.agent.tokens)


def test_missing_variables_and_secret_files_are_all_reported(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [
        {"name": "a", "value": "${MISSING_ONE}"},
        {"name": "b", "value": "${file:/nonexistent/secret}"},
    ]
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir, env={})
    text = " | ".join(str(p) for p in err.value.problems)
    assert "MISSING_ONE" in text and "/nonexistent/secret" in text


def test_missing_reference_file_is_reported_before_start(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0]["reference"]["path"] = "does-not-exist.parquet"
    scenario.rewrite(cfg)
    with pytest.raises(ConfigError) as err:
        load_config(scenario.config_path)
    assert err.value.problems[0].path == "systems.0.reference.path"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120)


def test_config_validate_exits_2_and_lists_problems_without_traceback(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0]["risk_tier"] = "extreme"
    cfg["systems"][0]["window"]["min_rows"] = 0
    scenario.rewrite(cfg)
    r = _cli("config", "validate", str(scenario.config_path))
    assert r.returncode == 2
    assert "systems.0.risk_tier" in r.stderr and "systems.0.window.min_rows" in r.stderr
    assert "Traceback" not in r.stderr


def test_invalid_yaml_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("systems: [\n  - id: x\n   name: y\n")
    r = _cli("config", "validate", str(bad))
    assert r.returncode == 2
    assert "invalid YAML" in r.stderr and "line" in r.stderr
    assert "Traceback" not in r.stderr


def test_valid_config_validates(scenario: Scenario) -> None:
    r = _cli("config", "validate", str(scenario.config_path))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_inventory_exports_governance_fields(scenario: Scenario) -> None:
    r = _cli("inventory", "--config", str(scenario.config_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    (entry,) = yaml.safe_load(r.stdout)
    assert entry["role"] == "provider" and entry["risk_tier"] == "limited"
    assert entry["owner_contact"] == "ml-oncall@example.com"
    r = _cli("inventory", "--config", str(scenario.config_path), "--format", "csv")
    header = r.stdout.splitlines()[0].split(",")
    assert {"id", "role", "risk_tier", "eu_ai_act_high_risk", "impact_assessment_ref", "lifecycle_stage"} <= set(header)


# -- drift methods, performance metrics and the reference: config errors, not failing windows ------------

def _problems(cfg: dict[str, object], scenario: Scenario, **kw: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir, env={}, **kw)  # type: ignore[arg-type]
    return {p.path: p.message for p in err.value.problems}


def test_unknown_drift_methods_are_reported_with_their_paths(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0]["checks"]["drift"].update(method="astrology", per_column={"x1": "tarot", "x2": "ks"})
    found = _problems(cfg, scenario)
    assert "astrology" in found["systems.0.checks.drift.method"]
    assert "wasserstein" in found["systems.0.checks.drift.method"], "the known methods are listed"
    assert "x1: unknown drift method 'tarot'" in found["systems.0.checks.drift.per_column"]
    assert "x2" not in found["systems.0.checks.drift.per_column"]
    scenario.rewrite(cfg)
    r = _cli("check", "--config", str(scenario.config_path))
    assert r.returncode == 2 and "astrology" in r.stderr
    assert not (scenario.dir / "state.db").exists(), "refused before start: no window, no collector incident"


def test_a_drift_method_must_apply_to_the_columns_kind(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0]["checks"]["drift"].update(method="ks", per_column={"x1": "chisquare", "score": "z"})
    found = _problems(cfg, scenario)
    assert "'ks' does not apply to categorical columns: colour" in found["systems.0.checks.drift.method"]
    assert "'x1', a numerical column" in found["systems.0.checks.drift.per_column.x1"]
    assert "'score', a numerical column" in found["systems.0.checks.drift.per_column.score"], "score predictions"
    cfg["systems"][0]["checks"]["drift"] = {"method": "ks", "per_column": {"colour": "chisquare"}}
    assert parse_config(cfg, base_dir=scenario.dir).systems[0].checks.drift.method == "ks"


def test_performance_metric_must_exist_and_fit_the_prediction(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0]["checks"]["performance"] = {"metric": "rocauc", "min": 0.7}
    assert "roc_auc" in _problems(cfg, scenario)["systems.0.checks.performance.metric"]
    cfg["systems"][0]["checks"]["performance"] = {"metric": "mae", "max": 0.3}
    assert "cannot be computed for a score prediction" in _problems(cfg, scenario)[
        "systems.0.checks.performance.metric"]
    cfg["systems"][0]["schema"]["prediction"] = {"column": "score", "kind": "classification"}
    cfg["systems"][0]["checks"]["performance"] = {"metric": "roc_auc", "min": 0.7}
    assert "classification prediction" in _problems(cfg, scenario)["systems.0.checks.performance.metric"]
    cfg["systems"][0]["schema"]["prediction"] = {"column": "score", "kind": "regression"}
    cfg["systems"][0]["checks"]["performance"] = {"metric": "rmse", "max": 0.5}
    cfg["systems"][0]["checks"]["fairness"]["enabled"] = False
    assert parse_config(cfg, base_dir=scenario.dir).systems[0].checks.performance.metric == "rmse"


def test_the_metric_names_are_those_the_metrics_layer_computes() -> None:
    import pandas as pd

    from config.model import CLASSIFICATION_METRICS, REGRESSION_METRICS, SCORE_METRICS, PerformanceMetric
    from metrics.performance import classification_metrics, regression_metrics

    y = pd.Series([0, 1, 1, 0])
    labels = set(classification_metrics(y_true=y, y_pred=y)) - {"count"}
    scores = set(classification_metrics(y_true=y, y_pred=y, y_score=y.astype(float))) - {"count"}
    regression = set(regression_metrics(y_true=y.astype(float), y_pred=y.astype(float))) - {"count"}
    assert (set(CLASSIFICATION_METRICS), set(SCORE_METRICS), set(REGRESSION_METRICS)) == (labels, scores, regression)
    assert set(PerformanceMetric.__args__) == scores | regression  # type: ignore[attr-defined]


def test_one_invalid_field_does_not_hide_the_other_problems(scenario: Scenario) -> None:
    cfg = scenario.config()
    s = cfg["systems"][0]
    s["role"] = "seller"
    s["reference"]["path"] = "does-not-exist.parquet"
    s["checks"]["drift"]["method"] = "ks"  # on a categorical feature
    cfg["sinks"]["pager"] = {"type": "carrier-pigeon"}
    found = _problems(cfg, scenario)
    assert {"systems.0.role", "systems.0.reference.path", "systems.0.checks.drift.method",
            "sinks.pager.type"} <= set(found)


def test_a_declared_feature_missing_from_the_reference_is_reported(scenario: Scenario) -> None:
    from agent.preflight import reference_columns

    cfg = scenario.config()
    cfg["systems"][0]["schema"]["features"]["income"] = "numerical"
    found = _problems(cfg, scenario, reference_columns=reference_columns)
    assert "not a column of the reference data" in found["systems.0.schema.features.income"]
    scenario.rewrite(cfg)
    r = _cli("config", "validate", str(scenario.config_path))
    assert r.returncode == 2 and "systems.0.schema.features.income" in r.stderr, r.stderr
    r = _cli("check", "--config", str(scenario.config_path))
    assert r.returncode == 2 and "systems.0.schema.features.income" in r.stderr, "checked before a check starts"
    csv = scenario.dir / "reference.csv"
    import pandas as pd

    pd.read_parquet(scenario.dir / "reference.parquet").to_csv(csv, index=False)
    cfg["systems"][0]["reference"]["path"] = str(csv)
    assert "systems.0.schema.features.income" in _problems(cfg, scenario, reference_columns=reference_columns)
    del cfg["systems"][0]["schema"]["features"]["income"]
    assert parse_config(cfg, base_dir=scenario.dir, reference_columns=reference_columns).systems


def test_a_feature_missing_from_the_reference_is_a_finding_in_every_window(scenario: Scenario) -> None:
    from datetime import timedelta

    from agent.runner import Agent
    from tests.conftest import T0

    cfg = scenario.config()
    cfg["systems"][0]["schema"]["features"]["income"] = "numerical"
    scenario.hour(T0)
    agent = Agent(parse_config(cfg, base_dir=scenario.dir), base_dir=scenario.dir)
    try:
        (outcome,) = agent.run_system("scoring", T0 + timedelta(hours=1))
    finally:
        agent.close()
    findings = {(f["kind"], f["column"]) for f in outcome.results["data_quality"]["findings"]}
    assert ("missing_in_reference", "income") in findings
    (quality,) = [v for v in outcome.verdicts if v.check == "data_quality"]
    assert quality.state == "breach" and "income" in quality.summary
