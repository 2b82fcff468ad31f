"""Fixtures for the evidence tests: a state store, a ledger written in bulk, an agent with incidents, keys."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from agent.evidence import (
    GENESIS,
    SIGNATURE_SEQ,
    ControlMap,
    HeadSigner,
    Record,
    chain_hash,
    head_message,
    iso,
    record_hash,
)
from agent.evidence_pack import _signed_content, sha256_file
from agent.runner import Agent, Clock
from agent.schema import EvidenceRecord, LedgerHead
from agent.store import Store
from config.loader import load_config
from tests.conftest import T0, Scenario

FEATURES = ["income", "age", "debt_ratio", "history", "amount"]
WINDOW_MARK = datetime(1999, 1, 1, tzinfo=UTC)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


def check_run_payload(i: int, start: datetime, *, shift: float = 0.0) -> dict[str, Any]:
    """A check run's evidence as the runner writes it, with drift, fairness and performance results."""
    wave = (i % 48) / 48
    share = round(min(1.0, 0.1 + shift + 0.2 * wave), 4)
    scores = [round(0.02 + 0.03 * k * wave + shift, 4) for k in range(len(FEATURES))]
    cols = [{"column": f, "kind": "numerical", "method": "wasserstein", "score": sc, "threshold": 0.1,
             "drifted": sc > 0.1, "status": "ok"} for f, sc in zip(FEATURES, scores, strict=True)]
    gap = round(0.04 + 0.05 * wave, 4)
    acc = round(0.86 - 0.05 * wave, 4)
    return {
        "check_run_id": i, "phase": "all", "window": {"start": iso(start), "end": iso(start + timedelta(hours=1))},
        "rows": 400, "status": "ok", "config_digest": "c" * 64, "reference_digest": "r" * 64,
        "verdicts": [
            {"check": "drift", "subject": "dataset", "state": "breach" if share >= 0.5 else "ok", "value": share,
             "threshold": 0.5, "summary": ""},
            {"check": "fairness", "subject": "sex", "state": "ok", "value": gap, "threshold": 0.1, "summary": ""},
            {"check": "performance", "subject": "accuracy", "state": "ok", "value": acc, "threshold": 0.8,
             "summary": ""}],
        "results": {"drift": {"columns": cols, "drifted_count": sum(c["drifted"] for c in cols), "share": share,
                              "dataset_drift": share >= 0.5, "drift_share": 0.5},
                    "fairness": [{"sensitive": "sex", "metrics": {"demographic_parity_difference": gap,
                                                                  "equalized_odds_difference": round(gap * 1.3, 4)}}],
                    "performance": {"accuracy": acc, "f1": round(acc - 0.05, 4), "count": 400}},
    }


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def bulk_ledger(store: Store, n: int, *, start: datetime = T0, step: timedelta = timedelta(minutes=1),
                systems: tuple[str, ...] = ("credit", "fraud"), signer: HeadSigner | None = None,
                controls: ControlMap | None = None) -> list[str]:
    """Write ``n`` chained records straight into a SQLite store (what years of the agent's appends
    produce), with an incident lifecycle every 500 records. Returns the record hashes, index 0 = seq 1.

    The canonical content is assembled as text (keys in sorted order) so a 100k-record ledger is written
    in seconds; the verification tests prove it is the same canonical form the ledger hashes."""
    cmap = controls or ControlMap()
    prev, hashes, batch = GENESIS, [], []
    controls_text: dict[tuple[str, bool], str] = {}
    templates: dict[int, str] = {}
    incident = 0
    insert_sql = ("INSERT INTO evidence (seq, ts, kind, system_id, controls, payload, prev_hash, hash) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    with store.transaction() as s:
        conn = s.connection()
        for i in range(n):
            seq = i + 1
            ts = iso(start + step * i)
            phase = i % 500
            # an incident's records all belong to the system it opened on
            owner = i - phase + 10 if phase in (10, 11, 60, 200) else i
            system = systems[owner % len(systems)]
            payload: dict[str, Any]
            if phase == 10:
                incident += 1
                kind, payload = "incident_opened", {"incident_id": incident, "kind": "drift", "subject": "dataset",
                                                    "severity": "medium", "title": f"Data drift on {system}",
                                                    "summary": "3 of 5 columns drifted"}
            elif phase == 11:
                kind, payload = "notification_delivered", {"incident_id": incident, "action": "open",
                                                           "sink": "jira", "channel": "jira AIMS", "remote_id": "AI-1"}
            elif phase == 60:
                kind, payload = "human_override", {"incident_id": incident, "action": "acknowledge",
                                                   "by": "alice", "reason": "looking into it"}
            elif phase == 200:
                kind, payload = "incident_resolved", {"incident_id": incident, "reason": "recovered",
                                                      "duration_s": 190 * 60.0}
            else:
                kind, payload = "check_run", {}
            ckey = (kind, kind == "check_run")
            if kind == "check_run":
                # one canonical text per shape of results; only the window differs between runs
                wave = i % 48
                if wave not in templates:
                    templates[wave] = _canon(check_run_payload(wave, WINDOW_MARK))
                window_start = start + step * i
                ptext = templates[wave].replace(iso(WINDOW_MARK), iso(window_start)).replace(
                    iso(WINDOW_MARK + timedelta(hours=1)), iso(window_start + timedelta(hours=1)))
                if ckey not in controls_text:
                    controls_text[ckey] = _canon(cmap.controls(kind, check_run_payload(wave, WINDOW_MARK)))
            else:
                ptext = _canon(payload)
                if ckey not in controls_text:
                    controls_text[ckey] = _canon(cmap.controls(kind, payload))
            ctext = controls_text[ckey]
            content = (f'{{"controls":{ctext},"kind":{_canon(kind)},"payload":{ptext},"seq":{seq},'
                       f'"system":{_canon(system)},"ts":{_canon(ts)}}}')
            h = chain_hash(prev, hashlib.sha256(content.encode()).hexdigest())
            batch.append((seq, ts, kind, system, ctext, ptext, prev, h))
            hashes.append(h)
            prev = h
            if len(batch) >= 10000:
                conn.exec_driver_sql(insert_sql, batch)
                batch = []
        if batch:
            conn.exec_driver_sql(insert_sql, batch)
        s.merge(LedgerHead(id=1, seq=n, hash=prev))  # the migration creates the head row
        if signer is not None:
            s.add(EvidenceRecord(seq=SIGNATURE_SEQ, ts=iso(start), kind="ledger_head_signature", system_id=None,
                                 controls=[], prev_hash=prev, hash=GENESIS,
                                 payload={"seq": n, "hash": prev, "algorithm": signer.algorithm,
                                          "key_id": signer.key_id, "signature": signer.sign(head_message(n, prev)),
                                          "signed_at": iso(start)}))
    return hashes


@pytest.fixture
def ed25519_keys(tmp_path: Path) -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files: (private, public)."""
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "ledger-signing.pem"
    public = tmp_path / "ledger-signing.pub.pem"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public


def run_hours(sc: Scenario, shifts: list[float], *, bias: float = 0.0, signer: HeadSigner | None = None,
              clock: Clock | None = None) -> Agent:
    """Let the scenario's agent judge one hourly window per entry of ``shifts`` (drift of x1); ``clock``
    stamps what is not stamped with the window's time (the config load), default the real clock."""
    for h, shift in enumerate(shifts):
        sc.hour(T0 + timedelta(hours=h), shift=shift, bias=bias)
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir, **({"clock": clock} if clock else {}))
    if signer is not None:
        agent.ledger.signer = signer
    agent.record_config_loaded(str(sc.config_path))
    agent.run_system("scoring", T0 + timedelta(hours=len(shifts)))
    agent.deliver(T0 + timedelta(hours=len(shifts)))
    return agent


def rechain(records: list[dict[str, Any]], start: int) -> None:
    """Alter record ``start`` and recompute every hash after it, as an attacker with the file would."""
    records[start]["payload"]["forged"] = True
    prev = records[start]["prev_hash"]
    for r in records[start:]:
        r["prev_hash"] = prev
        r["hash"] = record_hash(prev, Record.from_json(r).content())
        prev = r["hash"]


def write_records(pack: Path, records: list[dict[str, Any]]) -> None:
    (pack / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                                                for r in records), encoding="utf-8")


def rewrite_manifest(pack: Path, records: list[dict[str, Any]], *, resign: Any = None, drop_signature: bool = False
                      ) -> None:
    """The attacker's manifest: new digests and head, old (or no, or their own) signature."""
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["chain"]["head_hash"] = records[-1]["hash"]
    manifest["chain"]["anchor_prev_hash"] = records[0]["prev_hash"]
    manifest["files"]["records.jsonl"] = sha256_file(pack / "records.jsonl")
    if drop_signature:
        manifest.pop("signature", None)
    if resign is not None:
        manifest["signature"] = {**resign.public(), "value": resign.sign(_signed_content(manifest))}
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
