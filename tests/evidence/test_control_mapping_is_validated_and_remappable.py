"""The control mapping: every problem in an organisation's file is reported at once with its path; a
separate AIMS SoA, a merged SoA and a framework of the organisation's own all work; the pack's summary
lists controls with evidence and every Annex A control without any (or excluded by the SoA)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from agent.evidence import ANNEX_A, SHIPPED_CONTROLS, ControlMap
from agent.evidence_pack import export_pack
from config.errors import ConfigError
from tests.conftest import Scenario
from tests.evidence.conftest import cli, run_hours


def _write(path: Path, mapping: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def test_every_problem_in_a_mapping_is_reported_with_its_path(tmp_path: Path) -> None:
    bad = _write(tmp_path / "controls.yaml", {
        "frameworks": {"iso42001": "ISO/IEC 42001", "soa": {"title": "Our SoA", "pattern": "x"}},
        "kinds": {"check_run": {"iso42001": ["A.6.2.6", "6.2.6", "A.6.2.9"], "iso27002": ["5.1"]},
                  "Bad-Kind": {"iso42001": ["A.7.4"]}},
        "results": {"drift": {"iso42001": "A.7.4"}, "latency": {"iso42001": ["A.4.5"]}},
        "extras": {},
    })
    with pytest.raises(ConfigError) as err:
        ControlMap(bad)
    found = {str(p) for p in err.value.problems}
    assert "extras: unknown key (expected frameworks, kinds, results, titles, not_applicable)" in found
    assert any(p.startswith("frameworks.soa:") for p in found)
    assert "kinds.check_run.iso42001.1: '6.2.6' is not a iso42001 control id" in found
    assert "kinds.check_run.iso42001.2: A.6.2.9 is not an ISO/IEC 42001 Annex A control" in found
    assert any(p.startswith("kinds.check_run.iso27002: unknown framework 'iso27002'") for p in found)
    assert any(p.startswith("kinds.Bad-Kind:") for p in found)
    assert "results.drift.iso42001: must be a list of control ids" in found
    assert any(p.startswith("results.latency: unknown result section") for p in found)
    assert len(found) == 8


def test_agent_refuses_to_start_on_a_bad_mapping(scenario: Scenario) -> None:
    _write(scenario.dir / "soa.yaml", {"frameworks": {"iso42001": "x"}, "kinds": {"check_run": {"iso42001": ["A.99"]}}})
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["agent"]["evidence"] = {"controls_file": "soa.yaml"}
    scenario.config_path.write_text(yaml.safe_dump(cfg))
    r = cli("check", "--config", str(scenario.config_path))
    assert r.returncode == 2
    assert "soa.yaml" in r.stderr and "kinds.check_run.iso42001.0" in r.stderr and "Traceback" not in r.stderr


def test_shipped_mapping_covers_every_record_kind_and_only_annex_a_ids() -> None:
    shipped = ControlMap()
    raw = yaml.safe_load(SHIPPED_CONTROLS.read_text())
    from agent.evidence import RECORD_KINDS

    assert set(RECORD_KINDS) <= set(raw["kinds"])
    assert all(c.removeprefix("iso42001:") in ANNEX_A for k in RECORD_KINDS for c in shipped.controls(k)
               if c.startswith("iso42001:"))
    assert len(ANNEX_A) == 38
    run = shipped.controls("check_run", {"results": {"fairness": [{"sensitive": "sex"}], "drift": {"share": 0.1}}})
    assert {"iso42001:A.6.2.6", "iso42001:A.5.4", "iso42001:A.7.4"} <= set(run)
    assert "iso42001:A.5.4" not in shipped.controls("check_run", {"results": {"drift": {"share": 0.1}}})


def test_separate_aims_soa_and_own_framework_drive_the_pack(scenario: Scenario) -> None:
    _write(scenario.dir / "aims-soa.yaml", {
        "frameworks": {"iso42001": "ISO/IEC 42001:2023 Annex A",
                       "acme_soa": {"title": "ACME AIMS SoA", "id_pattern": r"AIMS-\d{3}"}},
        "kinds": {"check_run": {"iso42001": ["A.6.2.6"], "acme_soa": ["AIMS-017"]},
                  "default": {"iso42001": ["A.6.2.8"]}},
        "titles": {"acme_soa": {"AIMS-017": "Model monitoring in production"}},
        "not_applicable": {"iso42001": ["A.10.4"]},
    })
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["agent"]["evidence"] = {"controls_file": "aims-soa.yaml"}
    scenario.config_path.write_text(yaml.safe_dump(cfg))
    agent = run_hours(scenario, [0.0, 2.0, 0.0])
    agent.close()
    out = scenario.dir / "pack"
    r = cli("evidence", "export", "--config", str(scenario.config_path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "controls.csv").open()))
    assert list(rows[0]) == ["framework", "control", "title", "records", "kinds", "first", "last", "agent",
                             "applicable"]
    by = {(r["framework"], r["control"]): r for r in rows}
    assert by[("acme_soa", "AIMS-017")]["title"] == "Model monitoring in production"
    assert int(by[("acme_soa", "AIMS-017")]["records"]) == 3
    assert by[("iso42001", "A.6.2.6")]["kinds"] == "check_run"
    assert not any(r["framework"] == "iso27001" for r in rows)  # a separate AIMS SoA: no ISO 27001
    assert by[("iso42001", "A.10.4")]["applicable"] == "no"
    missing = [r for r in rows if r["framework"] == "iso42001" and r["records"] == "0"]
    assert {"A.2.2", "A.5.4"} <= {r["control"] for r in missing}
    assert by[("iso42001", "A.2.2")]["agent"] == "organisational"
    assert len([r for r in rows if r["framework"] == "iso42001"]) == 38


def test_merged_soa_pack_summarises_controls_across_frameworks(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0, 2.0, 0.0])
    manifest = export_pack(agent.store, scenario.dir / "pack")
    agent.close()
    rows = list(csv.DictReader((scenario.dir / "pack" / "controls.csv").open()))
    frameworks = {r["framework"] for r in rows if int(r["records"])}
    assert {"iso42001", "iso27001", "eu_ai_act", "nist_ai_rmf"} <= frameworks
    fairness = next(r for r in rows if r["control"] == "A.5.4")
    assert int(fairness["records"]) == 3 and fairness["first"] and fairness["last"]
    assert next(r for r in rows if r["control"] == "A.8.16")["title"] == "Monitoring activities"
    assert manifest["controls_source"] == "controls.yaml"


def test_controls_the_soa_excludes_are_never_presented_or_linked_as_evidenced(tmp_path: Path) -> None:
    from agent.evidence import Ledger
    from agent.evidence_pack import push_to_grc
    from agent.store import Store
    from config.model import EvidenceConfig
    from connectors.grc.ciso_assistant_fake import FakeCisoAssistant
    from tests.conftest import T0

    mapping: dict[str, object] = {"frameworks": {"iso42001": "ISO/IEC 42001:2023 Annex A"},
                                  "kinds": {"check_run": {"iso42001": ["A.6.2.6", "A.10.4"]},
                                            "default": {"iso42001": ["A.6.2.8"]}}}
    before = ControlMap(_write(tmp_path / "before.yaml", mapping))
    after = ControlMap(_write(tmp_path / "after.yaml", {**mapping, "not_applicable": {"iso42001": ["A.10.4"]}}))
    assert after.controls("check_run") == ["iso42001:A.6.2.6"]  # new records do not claim an excluded control
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    with store.transaction() as s:  # written before the SoA excluded A.10.4: the records still carry it
        Ledger(before).append(s, "check_run", {"status": "ok"}, system_id="credit", now=T0)
    export_pack(store, tmp_path / "pack", control_map=after)
    rows = {r["control"]: r for r in csv.DictReader((tmp_path / "pack" / "controls.csv").open())}
    assert rows["A.10.4"]["applicable"] == "no" and rows["A.10.4"]["records"] == "0" and not rows["A.10.4"]["kinds"]
    assert rows["A.6.2.6"]["records"] == "1"
    report = (tmp_path / "pack" / "report.html").read_text()
    assert "<tr><td>iso42001:A.10.4</td>" not in report and "<tr><td>iso42001:A.6.2.6</td><td>1</td>" in report

    fake = FakeCisoAssistant("pat-0123456789abcdef").start()
    try:
        audit = fake.add_audit(["A.6.2.6", "A.10.4"])
        cfg = EvidenceConfig.model_validate({"grc": {"url": fake.url, "token": "pat-0123456789abcdef",
                                                     "folder": fake.folder, "compliance_assessment": audit,
                                                     "allowed_hosts": ["127.0.0.1"]}})
        result = push_to_grc(store, cfg, control_map=after)
    finally:
        fake.stop()
        store.close()
    linked = {ra["requirement"]["urn"].rsplit(":", 1)[1] for ra in fake.requirement_assessments.values()
              if ra["evidences"]}
    assert linked == {"a.6.2.6"} and len(result.linked) == 1
