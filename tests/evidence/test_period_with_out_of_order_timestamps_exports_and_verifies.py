"""Records are stamped with their writer's time (the runner's clock, `check --now`, the API's wall clock), so
timestamps need not rise with seq. A period still exports as one contiguous, verifiable range of the chain:
from the first record stamped inside it to the last, records in between stamped outside it included."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from agent.evidence import ControlMap, Ledger, iso
from agent.evidence_pack import export_pack, verify_pack
from agent.store import Store
from tests.conftest import T0

H = timedelta(hours=1)


def _write(store: Store, hours: list[int]) -> None:
    ledger = Ledger(ControlMap())
    with store.transaction() as s:
        for i, h in enumerate(hours):
            ledger.append(s, "check_run", {"check_run_id": i + 1, "status": "ok"}, system_id="credit", now=T0 + h * H)


def _seqs(pack: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in (pack / "records.jsonl").read_text().splitlines()]


def test_a_period_exports_contiguously_by_seq_and_verifies(store: Store, tmp_path: Path) -> None:
    # record 2 was judged "as of" an hour before record 1; record 5 by a clock running behind
    _write(store, [10, 9, 11, 12, 8, 13])
    pack = tmp_path / "morning"
    manifest = export_pack(store, pack, since=iso(T0 + 9.5 * H), until=iso(T0 + 13.5 * H))
    assert _seqs(pack) == [1, 2, 3, 4, 5, 6]
    assert manifest["chain"]["stamped_outside_period"] == 2 and manifest["records"] == 6
    assert verify_pack(pack) == 6

    early = tmp_path / "early"
    manifest = export_pack(store, early, since=iso(T0 + 8.5 * H), until=iso(T0 + 9.5 * H))
    assert _seqs(early) == [2] and manifest["chain"]["anchor_prev_hash"] != "0" * 64
    assert verify_pack(early) == 1

    empty = tmp_path / "empty"
    assert export_pack(store, empty, since=iso(T0 + 20 * H))["records"] == 0
    assert verify_pack(empty) == 0
