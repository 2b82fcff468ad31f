"""Pushing packs to CISO Assistant, contract-tested against the fake that ships beside the client: Token
auth, limit/offset pagination, raw-body uploads with Content-Disposition, one new revision per pack
(never a re-upload; a retry neither leaves an empty revision nor adds a second one), the server's SHA-256
cross-checked, requirement assessments found by Annex A URN, checked to be the ones asked for, and linked
without dropping the evidence already linked (M2M lists are replaced on PATCH)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator

import pytest
import yaml

from agent.evidence_pack import export_zip
from config.errors import PermanentSinkError, RetryableSinkError
from connectors.grc.ciso_assistant import CisoAssistant, PushResult, requirement_urn
from connectors.grc.ciso_assistant_fake import FakeCisoAssistant
from tests.conftest import Scenario
from tests.evidence.conftest import cli, run_hours

TOKEN = "pat-0123456789abcdef"


@pytest.fixture
def fake() -> Iterator[FakeCisoAssistant]:
    server = FakeCisoAssistant(TOKEN).start()
    yield server
    server.stop()


def _client(fake: FakeCisoAssistant, token: str = TOKEN) -> CisoAssistant:
    return CisoAssistant(fake.url, token, allowed_hosts=["127.0.0.1"])


def test_urn_of_an_annex_a_control() -> None:
    assert requirement_urn("A.6.2.6") == "urn:intuitem:risk:req_node:iso42001-2023:a.6.2.6"
    assert requirement_urn("iso42001:A.10.3") == "urn:intuitem:risk:req_node:iso42001-2023:a.10.3"


def test_two_pushes_make_one_evidence_with_two_revisions_linked_by_urn(fake: FakeCisoAssistant) -> None:
    controls = ["A.6.2.6", "A.6.2.8", "A.7.4", "A.8.4", "A.5.4"]
    audit = fake.add_audit([*controls, "A.2.2"])
    other = fake.add_audit(["A.6.2.6"])  # another audit's assessments must not be touched
    existing = fake.route("POST", "/api/evidences/", {}, b'{"name": "policy review", "folder": "%s"}'
                          % fake.folder.encode(), {})[1]["id"]
    ra = next(r for r in fake.requirement_assessments.values()
              if r["compliance_assessment"] == audit and r["requirement"]["urn"].endswith("a.6.2.6"))
    ra["evidences"] = [existing]
    client = _client(fake)
    # pagination: the fake answers two items a page, so the six assessments of the audit take three pages
    assert len(list(client.iterate("/requirement-assessments/", {"compliance_assessment": audit}))) == 6
    first = client.push_pack(archive=b"PK first pack", filename="pack-1.zip", name="aims-agent evidence",
                             folder=fake.folder, description="monitoring", observation="period 1",
                             compliance_assessment=audit, controls=[*controls, "A.9.4"])
    second = client.push_pack(archive=b"PK second pack", filename="pack-2.zip", name="aims-agent evidence",
                              folder=fake.folder, description="monitoring", observation="period 2",
                              compliance_assessment=audit, controls=controls)
    client.close()
    assert first.created and not second.created and first.evidence_id == second.evidence_id
    assert (first.version, second.version) == (1, 2)
    revisions = sorted((r for r in fake.revisions.values() if r["evidence"] == first.evidence_id),
                       key=lambda r: r["version"])
    assert [r["content"] for r in revisions] == [b"PK first pack", b"PK second pack"]  # nothing overwritten
    assert revisions[1]["attachment"] == "pack-2.zip" and second.sha256 in revisions[1]["observation"]
    assert len(first.linked) == 5 and first.unmatched == ["A.9.4"]
    assert ra["evidences"] == [existing, first.evidence_id]  # the full list was sent
    assert all(r["evidences"] == [] for r in fake.requirement_assessments.values()
               if r["compliance_assessment"] == other or r["requirement"]["urn"].endswith("a.2.2"))
    assert sum(1 for m, p in fake.requests if m == "POST" and p.endswith("/upload/")) == 2


def test_bad_token_is_a_permanent_error_without_the_token_in_it(fake: FakeCisoAssistant) -> None:
    client = _client(fake, token="wrong-token-value")
    with pytest.raises(PermanentSinkError) as err:
        client.push_pack(archive=b"x", filename="p.zip", name="n", folder=fake.folder, description="d",
                         observation="o")
    client.close()
    assert "401" in str(err.value) and "wrong-token-value" not in str(err.value)


def test_loopback_is_refused_unless_allowed(fake: FakeCisoAssistant) -> None:
    client = CisoAssistant(fake.url, TOKEN)
    with pytest.raises(PermanentSinkError, match="loopback"):
        client.find_evidence("n", fake.folder)
    client.close()


def test_push_command_sends_the_exported_pack(scenario: Scenario, fake: FakeCisoAssistant) -> None:
    audit = fake.add_audit(["A.6.2.6", "A.7.4", "A.2.2"])
    agent = run_hours(scenario, [0.0, 2.0, 0.0])
    archive = export_zip(agent.store)
    agent.close()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert sorted(zf.namelist()) == ["evidence-pack/controls.csv", "evidence-pack/manifest.json",
                                         "evidence-pack/records.jsonl", "evidence-pack/report.html"]
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["agent"]["evidence"] = {"grc": {"url": fake.url, "token": "${CA_TOKEN}", "folder": fake.folder,
                                        "compliance_assessment": audit, "allowed_hosts": ["127.0.0.1"]}}
    scenario.config_path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "evidence", "push", "--config", str(scenario.config_path)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "CA_TOKEN": TOKEN})
    assert r.returncode == 0, r.stderr
    assert "as new evidence" in r.stdout and "linked to 2 requirement assessment(s)" in r.stdout
    rev = next(iter(fake.revisions.values()))
    with zipfile.ZipFile(io.BytesIO(rev["content"])) as zf:
        assert "evidence-pack/manifest.json" in zf.namelist()
    assert TOKEN not in r.stdout + r.stderr
    r = cli("evidence", "push", "--config", str(scenario.config_path))
    assert r.returncode == 2 and "CA_TOKEN" in r.stderr


def _push(client: CisoAssistant, fake: FakeCisoAssistant, archive: bytes, key: str, audit: str | None = None,
          controls: list[str] | None = None) -> PushResult:
    return client.push_pack(archive=archive, filename="pack.zip", name="aims-agent evidence", folder=fake.folder,
                            description="monitoring", observation=f"period {key}", key=key,
                            compliance_assessment=audit, controls=controls)


def test_an_assessment_of_another_requirement_is_never_linked(fake: FakeCisoAssistant) -> None:
    audit = fake.add_audit(["A.6.2.6", "A.2.2"])
    fake.ignore_urn_filter = True  # the server hands back the whole audit, whatever URN was asked for
    client = _client(fake)
    result = _push(client, fake, b"PK pack", "q1", audit, ["A.7.4", "A.2.2"])
    assert result.unmatched == ["A.7.4"] and len(result.linked) == 1
    linked = [ra for ra in fake.requirement_assessments.values() if ra["evidences"]]
    assert [ra["requirement"]["urn"] for ra in linked] == [requirement_urn("A.2.2")]
    fake.requirement_as_id = True  # an older server: the requirement is an id, its URN one request away
    other = fake.add_audit(["A.7.4", "A.6.2.6"])
    result = _push(client, fake, b"PK pack 2", "q2", other, ["A.7.4", "A.9.4"])
    client.close()
    assert result.unmatched == ["A.9.4"]
    [ra] = [ra for ra in fake.requirement_assessments.values() if ra["compliance_assessment"] == other
            and ra["evidences"]]
    assert ra["requirement"]["urn"] == requirement_urn("A.7.4")


def test_a_retried_push_leaves_no_empty_revision_and_a_repeated_one_adds_none(fake: FakeCisoAssistant) -> None:
    client = _client(fake)
    fake.fail_uploads = 1  # the first push dies after creating the Evidence, before its file arrives
    with pytest.raises(RetryableSinkError):
        _push(client, fake, b"PK period 1", "p1")
    first = _push(client, fake, b"PK period 1 again", "p1")  # a re-export of the same period: other bytes
    assert first.uploaded and first.version == 1
    fake.fail_uploads = 1
    with pytest.raises(RetryableSinkError):
        _push(client, fake, b"PK period 2", "p2")
    second = _push(client, fake, b"PK period 2", "p2")
    again = _push(client, fake, b"PK period 2, exported once more", "p2")
    client.close()
    assert second.version == 2 and not again.uploaded and again.revision_id == second.revision_id
    revisions = sorted((r for r in fake.revisions.values() if r["evidence"] == first.evidence_id),
                       key=lambda r: r["version"])
    assert [r["content"] for r in revisions] == [b"PK period 1 again", b"PK period 2"]  # none left empty


def test_pushing_the_same_period_twice_makes_one_revision(scenario: Scenario, fake: FakeCisoAssistant) -> None:
    from agent.evidence_pack import push_to_grc
    from config.model import EvidenceConfig

    audit = fake.add_audit(["A.6.2.6"])
    agent = run_hours(scenario, [0.0, 2.0, 0.0])
    cfg = EvidenceConfig.model_validate({"grc": {"url": fake.url, "token": TOKEN, "folder": fake.folder,
                                                 "compliance_assessment": audit, "allowed_hosts": ["127.0.0.1"]}})
    first = push_to_grc(agent.store, cfg, until="2030-01-01")
    again = push_to_grc(agent.store, cfg, until="2030-01-01")  # exported anew: another generated_at, same records
    later = push_to_grc(agent.store, cfg)
    agent.close()
    assert first.uploaded and not again.uploaded and again.revision_id == first.revision_id
    assert later.uploaded and later.version == 2
    assert len(fake.revisions) == 2 and all(r["content"] for r in fake.revisions.values())
