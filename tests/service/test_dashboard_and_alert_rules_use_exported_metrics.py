"""The Grafana dashboard and the Prometheus alert rules query only metric families the agent exports,
the rules pass ``promtool check rules`` and their unit tests (``promtool test rules``), and the
docker-compose Prometheus config is valid."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from agent.api import create_app
from agent.runner import Agent
from agent.service import Service
from tests.service.conftest import READ

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "aims-agent.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
# series Prometheus makes itself for every scrape target
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are neither functions, keywords, label
    matchers, label lists of by/without, nor durations and strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS or word.startswith("$"):
            continue
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "$"):
            continue  # the unit of a duration (3h) or a Grafana variable
        names.add(word)
    return names


def dashboard_queries() -> Iterator[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", var["query"]["query"])
            assert m, var["query"]
            yield f"variable {var['name']}", m.group(1)


def rule_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


@pytest.fixture
def exported(populated: tuple[Agent, Service]) -> set[str]:
    agent, service = populated
    with TestClient(create_app(agent, service=service)) as client:
        text = client.get("/metrics", headers=READ).text
    for populated_family in ("aims_feature_drift_score{", "aims_fairness_metric{", "aims_performance_metric{",
                             "aims_incidents_open{", "aims_check_stage_duration_seconds{"):
        assert populated_family in text, f"the populated agent exports {populated_family}...}}"
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def test_the_metric_name_parser_finds_names_and_skips_the_rest() -> None:
    assert metric_names('max by (system, check) (aims_decision_state{check=~"drift|x"}) == 1') == \
        {"aims_decision_state"}
    assert metric_names("time() - max by (system) (aims_a{c=\"d\"}) > 3 * 3600") == {"aims_a"}
    assert metric_names("increase(aims_b_total[1h]) > 0 or vector(0)") == {"aims_b_total"}


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_query_names_a_metric_family_the_agent_exports(source: str, exported: set[str]) -> None:
    queries = list(dashboard_queries() if source == "dashboard" else rule_queries())
    assert queries
    unknown: dict[str, set[str]] = {}
    for where, expr in queries:
        names = metric_names(expr) - SYNTHETIC
        assert names or expr.startswith("up"), f"{where}: no metric in {expr!r}"
        missing = names - exported
        if missing:
            unknown[where] = missing
    assert not unknown, f"queries name metrics the agent does not export: {unknown}"


def test_the_dashboard_covers_drift_fairness_performance_incidents_and_check_health() -> None:
    exprs = " ".join(e for _, e in dashboard_queries())
    for family in ("aims_feature_drift_score", "aims_fairness_metric", "aims_performance_metric",
                   "aims_incidents_open", "aims_check_last_success_timestamp_seconds", "aims_outbox_pending",
                   "aims_check_stage_duration_seconds"):
        assert family in exprs, family
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"] if "targets" in p)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


# series that describe one replica itself: the only ones a panel may show per instance
PER_REPLICA = {"aims_scrape_duration_seconds", "aims_build_info"}


def test_dashboard_panels_show_one_series_however_many_replicas_serve_it() -> None:
    """Every replica exports the same state-store series: a panel that sums or lists them raw counts
    each system once per replica. Each metric must sit inside a `max by`/`min by` over its own labels."""
    for where, expr in dashboard_queries():
        if where.startswith("variable "):
            continue
        for name in metric_names(expr) - PER_REPLICA:
            inner = re.search(rf"(max|min) by \(([^)]*)\) \((?:increase\()?{name}\b", expr)
            assert inner, f"{where}: {name} is not deduplicated across replicas in {expr!r}"
            by = inner.group(2)
            assert "instance" not in by and ("system" in by or "sink" in by), where


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_promtool_checks_the_rules() -> None:
    r = _promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    r = _promtool("test", "rules", "rules.test.yml", cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_checks_the_compose_prometheus_config(tmp_path: Path) -> None:
    cfg: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert cfg["rule_files"] == ["/etc/prometheus/rules.yml"]  # where docker-compose mounts rules.yml
    cfg["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    r = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
