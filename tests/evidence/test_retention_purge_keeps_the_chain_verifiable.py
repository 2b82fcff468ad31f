"""Retention: records older than the retention period are purged, a retention_purge record anchors the
remaining chain, and the ledger, its packs and its signed head still verify; the anchor cannot be moved;
a purge as of a future time, or of a ledger that does not verify, is refused and deletes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from agent.evidence import ControlMap, HmacSigner, Ledger, Record, check_ledger, iso, record_hash
from agent.evidence_pack import export_pack, verify_pack
from agent.retention import purge
from agent.schema import EvidenceRecord, LedgerHead
from agent.store import Store
from config.errors import InputError, LedgerIntegrityError
from tests.conftest import T0, Scenario
from tests.evidence.conftest import bulk_ledger, cli

KEY = b"retention-test-key-0123456789abcdef"
DAY = timedelta(days=1)
START = T0 - 700 * DAY  # the ledgers below start long enough ago that every purge is as of a past time


def _count(store: Store) -> int:
    with store.session() as s:
        return int(s.execute(select(func.count()).select_from(EvidenceRecord).where(EvidenceRecord.seq > 0))
                   .scalar_one())


def test_purge_removes_old_records_and_the_rest_still_verifies(store: Store, tmp_path: Path) -> None:
    signer = HmacSigner(KEY)
    ledger = Ledger(ControlMap(), signer=signer)
    bulk_ledger(store, 400, start=START, step=DAY, signer=signer)  # one record a day for 400 days
    now = START + 400 * DAY
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
    bulk_ledger(store, 300, start=START, step=DAY)
    result = purge(store, ledger, START + 300 * DAY, 200)
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
    bulk_ledger(store, 50, start=START, step=10 * DAY)
    store.close()
    now = (START + 500 * DAY).isoformat()
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--dry-run", "--now", now)
    assert r.returncode == 0, r.stderr
    assert "would purge 31 record(s) 1..31" in r.stdout
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--now", now)
    assert r.returncode == 0 and "purged 31 record(s)" in r.stdout and "record 51" in r.stdout
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 0 and "20 records, chain from record 32" in r.stdout


def test_a_purge_as_of_a_future_time_is_refused_but_a_dry_run_may_look_ahead(store: Store,
                                                                               scenario: Scenario) -> None:
    ledger = Ledger(ControlMap())
    bulk_ledger(store, 100, start=datetime.now(UTC) - 100 * DAY, step=DAY)
    future = datetime.now(UTC) + 3650 * DAY
    with pytest.raises(InputError, match="in the future"):
        purge(store, ledger, future, 190)
    assert _count(store) == 100
    assert purge(store, ledger, future, 190, dry_run=True).purged == 100
    assert _count(store) == 100

    cfg = yaml.safe_load(scenario.config_path.read_text())
    live = Store(cfg["agent"]["state_url"])
    bulk_ledger(live, 30, start=datetime.now(UTC) - 30 * DAY, step=DAY)
    live.close()
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--now", "2099-01-01")
    assert r.returncode == 2 and "in the future" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--now", "2099-01-01", "--dry-run")
    assert r.returncode == 0 and "would purge 30 record(s)" in r.stdout, r.stderr
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 0 and "30 records" in r.stdout


def test_a_tampered_prefix_is_not_purged(store: Store, scenario: Scenario) -> None:
    ledger = Ledger(ControlMap())
    bulk_ledger(store, 300, start=START, step=DAY)
    with store.transaction() as s:  # record 5 is old enough to be purged: purging it would hide this
        row = s.get(EvidenceRecord, 5)
        assert row is not None
        row.payload = {**row.payload, "forged": True}
    with pytest.raises(LedgerIntegrityError) as err:
        purge(store, ledger, START + 300 * DAY, 200)
    assert err.value.seq == 5 and _count(store) == 300
    with pytest.raises(LedgerIntegrityError):
        purge(store, ledger, START + 300 * DAY, 200, dry_run=True)

    cfg = yaml.safe_load(scenario.config_path.read_text())
    live = Store(cfg["agent"]["state_url"])
    bulk_ledger(live, 50, start=START, step=10 * DAY)
    with live.transaction() as s:
        live_row = s.get(EvidenceRecord, 3)
        assert live_row is not None
        live_row.kind = "forged"
    live.close()
    r = cli("evidence", "purge", "--config", str(scenario.config_path), "--now", (START + 500 * DAY).isoformat())
    assert r.returncode == 1 and "refusing to purge" in r.stderr and "first bad record: 3" in r.stderr, r.stderr
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 1 and "first bad record: 3" in r.stderr


def test_a_rechained_ledger_is_not_purged_and_signed_over(store: Store) -> None:
    signer = HmacSigner(KEY)
    bulk_ledger(store, 300, start=START, step=DAY, signer=signer)
    with store.transaction() as s:  # alter record 5 and recompute every hash after it, head row included
        prev = None
        for row in s.execute(select(EvidenceRecord).where(EvidenceRecord.seq >= 5)
                             .order_by(EvidenceRecord.seq)).scalars():
            if row.seq == 5:
                row.payload = {**row.payload, "forged": True}
                prev = row.prev_hash
            assert prev is not None
            row.prev_hash = prev
            row.hash = prev = record_hash(prev, Record.from_row(row).content())
        head = s.get(LedgerHead, 1)
        assert head is not None
        head.hash = prev
    with pytest.raises(LedgerIntegrityError, match="rewritten"):
        purge(store, Ledger(ControlMap(), signer=signer), START + 300 * DAY, 200)
    assert _count(store) == 300
