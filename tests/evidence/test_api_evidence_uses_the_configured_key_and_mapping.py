"""The evidence API works with the agent's configuration: an exported pack is signed with the configured key
and summarised with the organisation's control mapping; ledger verification checks the signed head with the
key; an uploaded pack is verified (files, chain, signature, and that it is a piece of this ledger), with a
bounded body and a clear 4xx for anything that is not a pack."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

import agent.api as api_module
from agent.api import create_app
from agent.evidence import SIGNATURE_SEQ, HmacSigner
from agent.evidence_pack import verify_pack_report
from agent.runner import Agent
from agent.schema import EvidenceRecord, LedgerHead
from config.loader import load_config
from tests.conftest import Scenario
from tests.evidence.conftest import rechain, rewrite_manifest, run_hours, write_records

SECRET = "api-evidence-hmac-secret-0123456789"
TOKEN = "reader-token-0123456789abcdef"
READ = {"Authorization": f"Bearer {TOKEN}"}


def _configure(sc: Scenario, *, signing: bool) -> None:
    (sc.dir / "soa.yaml").write_text(yaml.safe_dump({
        "frameworks": {"iso42001": "ISO/IEC 42001:2023 Annex A",
                       "acme_soa": {"title": "ACME AIMS SoA", "id_pattern": r"AIMS-\d{3}"}},
        "kinds": {"check_run": {"iso42001": ["A.6.2.6"], "acme_soa": ["AIMS-017"]},
                  "default": {"iso42001": ["A.6.2.8"]}},
        "titles": {"acme_soa": {"AIMS-017": "Model monitoring in production"}}}))
    cfg = yaml.safe_load(sc.config_path.read_text())
    cfg["agent"]["tokens"] = [{"name": "auditor", "value": TOKEN, "scopes": ["read"]}]
    cfg["agent"]["evidence"] = {"controls_file": "soa.yaml"}
    if signing:
        (sc.dir / "ledger.key").write_text(SECRET)
        cfg["agent"]["evidence"]["signing"] = {"algorithm": "hmac-sha256", "key_file": "ledger.key"}
    sc.config_path.write_text(yaml.safe_dump(cfg))


@pytest.fixture
def signed(scenario: Scenario) -> Iterator[tuple[Agent, TestClient]]:
    _configure(scenario, signing=True)
    run_hours(scenario, [0.0, 2.0, 0.0]).close()
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    with TestClient(create_app(agent)) as client:
        yield agent, client
    agent.close()


def _unzip(content: bytes, dest: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        zf.extractall(dest)
    return dest / "evidence-pack"


def _zip(pack: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(pack.iterdir()):
            zf.write(f, f"evidence-pack/{f.name}")
    return buf.getvalue()


def test_exported_pack_is_signed_and_uses_the_organisations_mapping(signed: tuple[Agent, TestClient],
                                                                    tmp_path: Path) -> None:
    _, client = signed
    r = client.get("/api/v1/evidence/export", headers=READ)
    assert r.status_code == 200, r.text
    pack = _unzip(r.content, tmp_path)
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["signature"]["algorithm"] == "hmac-sha256" and manifest["controls_source"] == "soa.yaml"
    rows = {(x["framework"], x["control"]): x for x in csv.DictReader((pack / "controls.csv").open())}
    assert rows[("acme_soa", "AIMS-017")]["title"] == "Model monitoring in production"
    assert int(rows[("acme_soa", "AIMS-017")]["records"]) == 3
    assert not any(fw == "iso27001" for fw, _ in rows)  # the shipped merged mapping is not used
    n, signature = verify_pack_report(pack, verifier=HmacSigner(SECRET.encode()))
    assert n > 5 and signature.startswith("verified (hmac-sha256")
    assert SECRET not in r.content.decode("latin-1")


def test_ledger_verification_checks_the_signed_head_with_the_key(signed: tuple[Agent, TestClient]) -> None:
    agent, client = signed
    ok = client.get("/api/v1/evidence/verify", headers=READ).json()
    assert ok["intact"] is True and ok["signature"].startswith("verified (hmac-sha256")
    with agent.store.transaction() as s:  # rewrite the head: drop the last record, move head and signed head
        last = s.get(LedgerHead, 1)
        assert last is not None
        s.query(EvidenceRecord).filter(EvidenceRecord.seq == last.seq).delete()
        prev = s.get(EvidenceRecord, last.seq - 1)
        sig = s.get(EvidenceRecord, SIGNATURE_SEQ)
        assert prev is not None and sig is not None
        last.seq, last.hash = prev.seq, prev.hash
        sig.payload = {**sig.payload, "seq": prev.seq, "hash": prev.hash}  # the signature cannot follow
    r = client.get("/api/v1/evidence/verify", headers=READ)
    assert r.status_code == 409 and "signature is not valid" in r.json()["reason"]


def test_an_uploaded_pack_is_verified_and_garbage_is_a_4xx(signed: tuple[Agent, TestClient], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    agent, client = signed
    archive = client.get("/api/v1/evidence/export", headers=READ).content
    url = "/api/v1/evidence/verify-pack"
    r = client.post(url, content=archive, headers={**READ, "Content-Type": "application/zip"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["intact"] and body["signature"].startswith("verified") and body["ledger"].startswith("matches")
    assert client.post(url, content=archive).status_code == 401  # an upload always needs a token

    pack = _unzip(archive, tmp_path)
    records = [json.loads(x) for x in (pack / "records.jsonl").read_text().splitlines()]
    del records[3]
    write_records(pack, records)
    r = client.post(url, content=_zip(pack), headers=READ)
    assert r.status_code == 409 and r.json()["first_bad_seq"] == records[3]["seq"] - 1

    two_levels = io.BytesIO()
    with zipfile.ZipFile(two_levels, "w") as zf:
        zf.writestr("a/manifest.json", "{}")
        zf.writestr("b/records.jsonl", "")
    for garbage, why in ((b"not a zip at all", "not a zip"), (two_levels.getvalue(), "one folder")):
        r = client.post(url, content=garbage, headers=READ)
        assert r.status_code == 422 and why in r.json()["detail"], r.text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evidence-pack/manifest.json", "{not json")
        zf.writestr("evidence-pack/records.jsonl", "")
    r = client.post(url, content=buf.getvalue(), headers=READ)
    assert r.status_code == 422 and "manifest.json" in r.json()["detail"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evidence-pack/../../etc/cron.d/x", "boom")
    assert client.post(url, content=buf.getvalue(), headers=READ).status_code == 422

    monkeypatch.setattr(api_module, "MAX_PACK_UPLOAD", 1000)
    with TestClient(create_app(agent)) as small:
        r = small.post(url, content=archive, headers=READ)
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]


def test_an_unsigned_pack_rewritten_with_its_manifest_does_not_match_the_ledger(scenario: Scenario,
                                                                               tmp_path: Path) -> None:
    _configure(scenario, signing=False)
    agent = run_hours(scenario, [0.0, 2.0, 0.0])
    with TestClient(create_app(agent)) as client:
        pack = _unzip(client.get("/api/v1/evidence/export", headers=READ).content, tmp_path)
        records = [json.loads(x) for x in (pack / "records.jsonl").read_text().splitlines()]
        rechain(records, 4)
        write_records(pack, records)
        rewrite_manifest(pack, records)
        assert verify_pack_report(pack)[0] == len(records)  # on its own it verifies: the documented limit
        r = client.post("/api/v1/evidence/verify-pack", content=_zip(pack), headers=READ)
    agent.close()
    assert r.status_code == 409 and "not this ledger's record" in r.json()["reason"]
    assert r.json()["first_bad_seq"] == records[-1]["seq"]
