"""The evidence features on a real PostgreSQL state store: signed head in the genesis slot, export of
the stored JSON, a signed pack, a retention purge and verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.evidence import HmacSigner, check_ledger
from agent.evidence_pack import export_pack, verify_pack_report
from agent.retention import purge
from tests.conftest import T0, Scenario
from tests.evidence.conftest import run_hours

pytestmark = pytest.mark.integration


def test_signed_ledger_exports_purges_and_verifies_on_postgresql(scenario: Scenario, pg_url: str) -> None:
    cfg = scenario.config()
    cfg["agent"]["state_url"] = pg_url
    scenario.rewrite(cfg)
    signer = HmacSigner(b"postgres-test-key-0123456789abcdef")
    agent = run_hours(scenario, [0.0, 2.0, 2.0, 0.0], signer=signer, clock=lambda: T0 + timedelta(hours=4))
    with agent.store.session() as s:
        before = check_ledger(s, verifier=signer)
    assert before.records > 10 and before.signature.startswith("verified")
    manifest = export_pack(agent.store, scenario.dir / "pack", signer=signer)
    assert manifest["chain"]["length"] == before.records
    n, signature = verify_pack_report(scenario.dir / "pack", verifier=signer)
    assert n == before.records and signature.startswith("verified")
    # every record was stamped in the first hours of T0, more than 183 days ago: all are purged and the
    # purge record anchors the chain
    result = purge(agent.store, agent.ledger, datetime.now(UTC), 183)
    assert result.purged == before.records
    with agent.store.session() as s:
        after = check_ledger(s, verifier=signer)
    assert after.records == 1 and after.first_seq == before.records + 1
    agent.close()
