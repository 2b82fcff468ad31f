"""The Kubernetes manifests and the rendered Helm chart are valid Kubernetes objects, run the agent as a
non-root user on a read-only root filesystem, carry an agent config that the agent accepts and the
alert rules of deploy/prometheus/rules.yml, and label their scrape job as the rules expect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pandas as pd
import pytest
import yaml

from config.loader import load_config
from tests.service.helm_subset import Chart, TemplateError

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"
SCHEMAS = Path(__file__).with_name("schemas")
CRD_SCHEMAS = {
    "ServiceMonitor": json.loads((SCHEMAS / "servicemonitor-monitoring-v1.json").read_text()),
    "PodMonitor": json.loads((SCHEMAS / "podmonitor-monitoring-v1.json").read_text()),
    "PrometheusRule": json.loads((SCHEMAS / "prometheusrule-monitoring-v1.json").read_text()),
}
RULES = DEPLOY / "prometheus" / "rules.yml"
SECRET_VALUES = {"stateUrl": "postgresql+psycopg://aims@db/aims", "readToken": "r" * 32, "operateToken": "o" * 32}


def validate(doc: dict[str, Any]) -> None:
    """Core kinds against the Kubernetes OpenAPI schemas (strict: unknown fields fail); the
    prometheus-operator kinds against the vendored subset of their CRD schema."""
    if doc["kind"] in CRD_SCHEMAS:
        jsonschema.Draft202012Validator(CRD_SCHEMAS[doc["kind"]]).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def chart() -> Chart:
    return Chart(DEPLOY / "helm" / "aims-agent")


def agent_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "aims-agent")


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} == {"ConfigMap", "Secret", "Deployment", "Service", "ServiceMonitor",
                                         "PodMonitor", "PrometheusRule"}
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("values", [
    {"secret": SECRET_VALUES},
    {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": False, "labels": {"release": "kube-prom"}},
     "prometheusRule": {"enabled": False}},
    {"secret": {"create": False, "name": "vault-synced"}, "replicas": 2, "model": {"containers": []},
     "prometheusRule": {"labels": {"release": "kube-prom"}}},
], ids=["with-secret-values", "podmonitor", "existing-secret"])
def test_the_rendered_chart_validates_against_the_kubernetes_schemas(values: dict[str, Any]) -> None:
    docs = chart().documents(values=values)
    for doc in docs:
        validate(doc)
    kinds = [d["kind"] for d in docs]
    assert ("ServiceMonitor" in kinds) == values.get("serviceMonitor", {}).get("enabled", True)
    assert ("PodMonitor" in kinds) == values.get("podMonitor", {}).get("enabled", False)
    assert ("PrometheusRule" in kinds) == values.get("prometheusRule", {}).get("enabled", True)
    assert ("Secret" in kinds) == (values.get("secret") == SECRET_VALUES), "rendered only with its values"
    pod, _ = agent_container(docs)
    if "name" in values.get("secret", {}):
        assert pod["volumes"][2]["secret"]["secretName"] == "vault-synced"


@pytest.mark.parametrize("secret", [{}, {"stateUrl": "postgresql+psycopg://aims@db/aims"},
                                    {"stateUrl": "postgresql+psycopg://aims@db/aims", "readToken": "r" * 32}],
                         ids=["defaults", "url-only", "no-operate-token"])
def test_the_chart_renders_no_secret_with_empty_values(secret: dict[str, str]) -> None:
    """An empty Secret would start the agent with empty tokens: none is rendered, the pod waits for yours."""
    docs = chart().documents(values={"secret": secret})
    assert "Secret" not in [d["kind"] for d in docs]
    pod, _ = agent_container(docs)
    assert pod["volumes"][2]["secret"]["secretName"] == "credit-scoring-aims-agent"


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_the_prometheus_rule_resource_holds_the_alert_rules(source: str) -> None:
    docs = manifests() if source == "manifests" else chart().documents()
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_the_pod_and_service_monitors_scrape_as_job_aims_agent(source: str) -> None:
    """AimsAgentDown selects up{job="aims-agent"}: prometheus-operator names the job after the Service
    or the PodMonitor, so both monitors relabel it (their relabelings run after the operator's own)."""
    values = {"podMonitor": {"enabled": True}}
    docs = manifests() if source == "manifests" else chart().documents(values=values)
    monitors = [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert {d["kind"] for d in monitors} == {"ServiceMonitor", "PodMonitor"}
    for mon in monitors:
        for endpoint in mon["spec"].get("endpoints") or mon["spec"]["podMetricsEndpoints"]:
            assert {"targetLabel": "job", "replacement": "aims-agent"} in endpoint["relabelings"], mon["kind"]
    assert 'up{job="aims-agent"}' in yaml.safe_load(RULES.read_text())["groups"][1]["rules"][0]["expr"]


def test_a_manifest_with_an_unknown_field_is_rejected() -> None:
    """The validation can fail: a typo in a container spec or a ServiceMonitor is caught."""
    _, container = agent_container(docs := manifests())
    container["securityContext"]["readOnlyRootFileSystem"] = True  # wrong case
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(next(d for d in docs if d["kind"] == "Deployment"))
    sm = next(d for d in manifests() if d["kind"] == "ServiceMonitor")
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(sm)
    rule = next(d for d in manifests() if d["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"  # not a Prometheus duration
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)
    pm = next(d for d in manifests() if d["kind"] == "PodMonitor")
    pm["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["target_label"] = "job"
    with pytest.raises(jsonschema.ValidationError):
        validate(pm)


def test_the_chart_refuses_templates_outside_its_subset(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("name: x\nversion: 0.1.0\nappVersion: '1'\n")
    (tmp_path / "values.yaml").write_text("a: 1\n")
    (tmp_path / "templates" / "x.yaml").write_text('{{ include "x.labels" . }}\n')
    with pytest.raises(TemplateError):
        Chart(tmp_path).render()
    (tmp_path / "templates" / "x.yaml").write_text("{{ .Values.missing }}\n")
    with pytest.raises(TemplateError):
        Chart(tmp_path).render()


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_the_agent_runs_as_non_root_on_a_read_only_root_filesystem(source: str) -> None:
    docs = manifests() if source == "manifests" else chart().documents()
    pod, container = agent_container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert len(pod["containers"]) == 2, "the sidecar pattern: the model and the agent in one pod"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/lib/aims-agent"} <= mounts, "writable paths are volumes"


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_the_shipped_agent_config_is_accepted_by_the_agent(source: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    docs = manifests() if source == "manifests" else chart().documents()
    text = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "read-token").write_text("r" * 32 + "\n")
    (secrets / "operate-token").write_text("o" * 32 + "\n")
    cfg_path = tmp_path / "config.yaml"
    # the model container writes these to the shared volume; here a stand-in folder holds them
    model = tmp_path / "model"
    (model / "predictions").mkdir(parents=True)
    pd.DataFrame({"ts": [pd.Timestamp("2026-01-01")], "income": [1.0], "debt_ratio": [0.1], "employment": ["x"],
                  "sex": ["F"], "approval_score": [0.5], "request_id": ["a"]}).to_parquet(model / "reference.parquet")
    cfg_path.write_text(text.replace("/etc/aims-agent/secrets", str(secrets)).replace("/var/log/model", str(model)))
    monkeypatch.setenv("AIMS_STATE_URL", "postgresql+psycopg://aims@postgres:5432/aims")
    cfg = load_config(cfg_path)
    assert cfg.agent.state_url.get_secret_value().startswith("postgresql")
    assert sorted(t.value.get_secret_value() for t in cfg.agent.tokens) == ["o" * 32, "r" * 32]
    assert cfg.systems[0].eu_ai_act_high_risk is True


def test_the_image_is_multi_stage_non_root_with_a_healthcheck_from_the_lock_file() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 2 and all("slim" in f for f in froms)
    assert any(ln.startswith("RUN ") and "-c requirements.lock" in ln for ln in lines)
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0"), "the last USER is unprivileged"
    health = " ".join(lines[next(i for i, ln in enumerate(lines) if ln.startswith("HEALTHCHECK ")):][:2])
    assert "agent.healthcheck" in health and "9464" not in health, "the healthcheck follows the agent's port"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_compose_stack_publishes_ports_on_loopback_only() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"aims-agent", "prometheus", "grafana", "alertmanager"} <= set(compose["services"])
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for mount in compose["services"]["prometheus"]["volumes"] + compose["services"]["grafana"]["volumes"]:
        src = mount.split(":")[0]
        if src.startswith("./"):
            assert (DEPLOY / src).exists(), f"{src} is mounted but missing"
