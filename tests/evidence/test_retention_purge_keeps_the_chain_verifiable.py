"""Retention: records older than the retention period are purged, a retention_purge record anchors the
remaining chain, and the ledger, its packs and its signed head still verify; the anchor cannot be moved."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from agent.evidence import ControlMap, HmacSigner, Ledger, check_ledger, iso
from agent.evidence_pack import export_pack, verify_pack
from agent.retention import purge
from agent.schema import EvidenceRecord
from agent.store import Store
from config.errors import InputError, LedgerIntegrityError
from tests.conftest import T0, Scenario
from tests.evidence.conftest import bulk_ledger, cli

KEY = b"retention-test-key-0123456789abcdef"
DAY = timedelta(days=1)


def _count(store: Store) -> int:
    with store.session() as s:
        return int(s.execute(select(func.count()).select_from(EvidenceRecord).where(EvidenceRecord.seq > 0))
                   .scalar_one())


def test_purge_removes_old_records_and_the_rest_still_verifies(store: Store, tmp_path: Path) -> None:
    signer = HmacSigner(KEY)
    ledger = Ledger(ControlMap(), signer=signer)
    bulk_ledger(store, 400, step=DAY, signer=signer)  # one record a day for 400 days
    now = T0 + 400 * DAY
    dry = purge(store, ledger, now, 190, dry_run=True)
    assert dry.purged == 210 and dry.record_seq is None and _count(store) == 400
    result = purge(store, ledger, now, 190)
    assert (result.first_purged_seq, result.last_purged_seq, result.purged) == (1, 210, 210)
    assert result.record_seq == 401
    assert _count(store) == 400 - 210 + 1
    with store.session() as s:
        first_kept = s.get(EvidenceRecord, 211)
        assert first_kept is not None and first_kept.ts >= iso(now - 190 * DAY)
        report = check_ledger(s, verifier=signer)
    assert report.records == 191 and report.first_seq == 211 and report.signature.startswith("verified")
    pack = tmp_path / "pack"
    manifest = export_pack(store, pack, signer=signer)
    assert manifest["chain"]["first_seq"] == 211
    assert verify_pack(pack, verifier=signer) == 191
    # a later purge moves the anchor again, past the first purge record
    later = purge(store, ledger, now + 30 * DAY, 190)
    assert later.first_purged_seq == 211 and later.purged == 30
    with store.session() as s:
        assert check_ledger(s, verifier=signer).first_seq == 241
    assert purge(store, ledger, now + 30 * DAY, 190).purged == 0


def test_deleting_more_old_records_or_moving_the_anchor_is_detected(store: Store) -> None:
    ledger = Ledger(ControlMap())
    bulk_ledger(store, 300, step=DAY)
    result = purge(store, ledger, T0 + 300 * DAY, 200)
    assert result.last_purged_seq == 100
    with store.transaction() as s:  # quietly drop one more old record beyond the purge
        s.execute(EvidenceRecord.__table__.delete().where(EvidenceRecord.seq == 101))
    with store.session() as s, pytest.raises(LedgerIntegrityError) as err:
        check_ledger(s)
    assert err.value.seq == 101
    with store.transaction() as s:  # ... and pretend the purge went that far
        row = s.get(EvidenceRecord, result.record_seq)
        assert row is not None
        nxt = s.get(EvidenceRecord, 102)
        assert nxt is not None
        row.payload = {**row.payload, "purged_through_seq": 101, "anchor_hash": nxt.prev_hash}
    with store.session() as s, pytest.raises(LedgerIntegrityError) as err:
        check_ledger(s)
    assert err.value.seq == result.record_seq  # the purge record itself no longer fits the chain


def test_retention_below_six_months_is_refused(store: Store, scenario: Scenario) -> None:
    with pytest.raises(InputError, match="six months"):
        purge(store, Ledger(ControlMap()), T0, 120)
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["agent"]["evidence"] = {"retention_days": 90}
    scenario.config_path.write_text(yaml.safe_dump(cfg))
    r = cli("config", "validate", str(scenario.config_path))
    assert r.returncode == 2 and "agent.evidence.retention_days" in r.stderr


def test_purge_command_dry_run_then_purge(scenario: Scenario) -> None:
    cfg = yaml.safe_load(scenario.config_path.read_text())
    store = Store(cfg["agent"]["state_url"])
    bulk_ledger(store, 50, step=10 * DAY)
    store.close()
    now = (T0 + 500 * DAY).isoformat()
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--dry-run", "--now", now)
    assert r.returncode == 0, r.stderr
    assert "would purge 31 record(s) 1..31" in r.stdout
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--now", now)
    assert r.returncode == 0 and "purged 31 record(s)" in r.stdout and "record 51" in r.stdout
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 0 and "20 records, chain from record 32" in r.stdout
