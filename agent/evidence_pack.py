"""Evidence packs for auditors: export a period of the ledger and verify a pack (or a ledger) offline.

A pack is a folder: ``records.jsonl`` (the chain for the period; with ``--system``, other systems'
records are withheld as digests so the chain still verifies), ``controls.csv`` (records per control),
and ``manifest.json`` (period, anchors of the chain, and the SHA-256 of every file).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from agent import __version__
from agent.evidence import GENESIS, Record, iso, read_jsonl, verify_ledger, verify_records
from agent.schema import EvidenceRecord
from agent.store import Store
from config.errors import AimsError, EvidenceError, InputError, LedgerIntegrityError

FORMAT = "aims-evidence-pack/1"


def _parse_when(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"--{name} {value!r} is not an ISO 8601 date or time") from exc
    return iso(ts if ts.tzinfo else ts.replace(tzinfo=UTC))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_pack(store: Store, out: Path, *, since: str | None = None, until: str | None = None,
                system: str | None = None) -> dict[str, Any]:
    lo, hi = _parse_when(since, "since"), _parse_when(until, "until")
    out.mkdir(parents=True, exist_ok=True)
    per_control: dict[str, dict[str, Any]] = defaultdict(lambda: {"records": 0, "kinds": set(), "first": None,
                                                                  "last": None})
    count = total = 0
    first_seq = last_seq = None
    anchor = GENESIS
    head = GENESIS
    records_path = out / "records.jsonl"
    with store.session() as s:
        q = select(EvidenceRecord).order_by(EvidenceRecord.seq)
        if lo:
            q = q.where(EvidenceRecord.ts >= lo)
        if hi:
            q = q.where(EvidenceRecord.ts < hi)
        with records_path.open("w", encoding="utf-8") as fh:
            for row in s.execute(q.execution_options(yield_per=2000)).scalars():
                rec = Record.from_row(row)
                if first_seq is None:
                    first_seq, anchor = rec.seq, rec.prev_hash
                elif last_seq is not None and rec.seq != last_seq + 1:
                    raise EvidenceError(f"ledger records {last_seq + 1}..{rec.seq - 1} are missing from the store")
                last_seq, head = rec.seq, rec.hash
                total += 1
                if system and rec.system_id not in (system, None):
                    fh.write(json.dumps(rec.stub(), sort_keys=True) + "\n")
                    continue
                fh.write(json.dumps(rec.to_json(), sort_keys=True, ensure_ascii=False) + "\n")
                count += 1
                for control in rec.controls:
                    pc = per_control[control]
                    pc["records"] += 1
                    pc["kinds"].add(rec.kind)
                    pc["first"] = pc["first"] or rec.ts
                    pc["last"] = rec.ts
        ledger_len = s.execute(select(func.count()).select_from(EvidenceRecord)).scalar_one()
    controls_path = out / "controls.csv"
    with controls_path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["framework", "control", "records", "record_kinds", "first", "last"])
        for control in sorted(per_control):
            fw, _, cid = control.partition(":")
            pc = per_control[control]
            w.writerow([fw, cid, pc["records"], " ".join(sorted(pc["kinds"])), pc["first"], pc["last"]])
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "generator": f"aims-agent {__version__}",
        "generated_at": iso(datetime.now(UTC)),
        "period": {"since": lo, "until": hi},
        "system": system,
        "records": count,
        "chain": {"first_seq": first_seq, "last_seq": last_seq, "anchor_prev_hash": anchor, "head_hash": head,
                  "length": total, "ledger_records_at_export": ledger_len},
        "files": {p.name: sha256_file(p) for p in (records_path, controls_path)},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def verify_pack(folder: Path) -> int:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvidenceError(f"{folder}: cannot read manifest.json: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise EvidenceError(f"{folder}: not an evidence pack (format {manifest.get('format')!r})")
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.exists():
            raise LedgerIntegrityError(f"{name} is missing from the pack", seq=None)
        if name != "records.jsonl" and sha256_file(path) != digest:
            raise LedgerIntegrityError(f"{name} was altered (SHA-256 differs from the manifest)", seq=None)
    chain = manifest.get("chain", {})
    first = chain.get("first_seq")
    records = list(read_jsonl(folder / "records.jsonl"))
    n = verify_records(records, expect_start=first if first is not None else 1,
                       expect_prev=chain.get("anchor_prev_hash", GENESIS))
    if n != chain.get("length", n) or (records and records[-1].hash != chain.get("head_hash")):
        at = (records[-1].seq + 1) if records else first
        raise LedgerIntegrityError(f"the pack ends early: {n} of {chain.get('length')} records "
                                   f"(first missing: {at})", seq=at)
    if sha256_file(folder / "records.jsonl") != manifest.get("files", {}).get("records.jsonl"):
        raise LedgerIntegrityError("records.jsonl differs from the manifest's digest although the chain holds",
                                   seq=None)
    return n


def verify_path(target: str) -> tuple[bool, str]:
    """Verify a pack folder, a records .jsonl file, a config file's ledger or a database URL's ledger."""
    try:
        path = Path(target)
        if path.is_dir():
            n = verify_pack(path)
            return True, f"{target}: intact evidence pack ({n} records)"
        if path.suffix in (".jsonl", ".ndjson") and path.exists():
            n = verify_records(read_jsonl(path), expect_start=None, expect_prev=None)
            return True, f"{target}: intact chain of {n} records"
        if path.suffix in (".yaml", ".yml") and path.exists():
            from config.loader import load_config
            from connectors.registry import sink_config_model

            url = load_config(path, sink_config=sink_config_model).agent.state_url.get_secret_value()
        elif "://" in target:
            url = target
        else:
            return False, f"aims-agent: {target}: not a pack folder, .jsonl file, config file or database URL"
        store = Store(url, migrate=False)
        try:
            with store.session() as s:
                n = verify_ledger(s)
        finally:
            store.close()
        return True, f"ledger intact: {n} records"
    except LedgerIntegrityError as exc:
        where = f" (first bad record: {exc.seq})" if exc.seq is not None else ""
        return False, f"aims-agent: evidence verification FAILED: {exc}{where}"
    except AimsError as exc:
        return False, f"aims-agent: {exc}"
