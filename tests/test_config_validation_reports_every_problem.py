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
