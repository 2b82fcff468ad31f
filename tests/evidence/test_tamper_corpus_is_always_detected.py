"""The tamper corpus: every altered byte, dropped, inserted, reordered or truncated record is detected in a
pack; a chain re-computed from the middle is caught by the manifest's anchor and head, and, when the
attacker rewrites the manifest too, only by a signature. The limits without a key are asserted as well,
so the documentation's table stays true."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from agent.evidence import (
    SIGNATURE_SEQ,
    Ed25519Signer,
    HmacSigner,
    Record,
    check_ledger,
    load_signer,
    load_verifier,
    record_hash,
)
from agent.evidence_pack import export_pack, verify_pack, verify_pack_report
from agent.schema import EvidenceRecord, LedgerHead
from agent.store import Store
from config.errors import LedgerIntegrityError
from tests.conftest import T0, Scenario
from tests.evidence.conftest import bulk_ledger, cli, rechain, rewrite_manifest, run_hours, write_records

KEY = b"0123456789abcdef0123456789abcdef"


def _pack(sc: Scenario, name: str, signer: Any = None) -> Path:
    agent = run_hours(sc, [0.0, 2.0, 2.0, 0.0], signer=signer)
    with agent.store.transaction() as s:  # a record with multi-byte characters
        agent.ledger.append(s, "human_override", {"incident_id": 1, "action": "acknowledge", "by": "Zoë Ångström",
                                                  "reason": "Prüfung läuft: ärztliche Rücksprache"},
                            system_id="scoring", now=T0 + timedelta(hours=5))
    pack = sc.dir / name
    export_pack(agent.store, pack, signer=signer)
    agent.close()
    return pack


def _lines(pack: Path) -> list[bytes]:
    return (pack / "records.jsonl").read_bytes().splitlines(keepends=True)


def test_every_altered_byte_of_every_record_is_detected(scenario: Scenario) -> None:
    pack = _pack(scenario, "pack")
    original = _lines(pack)
    attempts = 0
    for i, line in enumerate(original):
        body = line.rstrip(b"\n")
        positions = set(range(0, len(body), max(1, len(body) // 16))) | {len(body) - 1, len(body)}
        for field in (b'"hash": "', b'"prev_hash": "', b'"seq": ', b'"ts": "', b'"ng'):  # inside values too
            at = body.find(field)
            if at >= 0:
                positions.add(at + len(field))
        for pos in sorted(positions):
            data = bytearray(line)
            data[pos] ^= 0x01  # one bit, so one byte: letters stay letters, '\n' becomes '\v'
            (pack / "records.jsonl").write_bytes(b"".join([*original[:i], bytes(data), *original[i + 1:]]))
            with pytest.raises(LedgerIntegrityError):
                verify_pack(pack)
            attempts += 1
    (pack / "records.jsonl").write_bytes(b"".join(original))
    assert verify_pack(pack) == len(original)
    assert attempts > 15 * len(original)


def test_dropped_inserted_reordered_and_truncated_records_are_named(scenario: Scenario) -> None:
    pack = _pack(scenario, "pack")
    original = _lines(pack)
    seqs = [json.loads(x)["seq"] for x in original]
    cases: list[tuple[str, list[bytes], int | None]] = []
    for i in range(len(original)):
        cases.append((f"drop {i}", original[:i] + original[i + 1:], seqs[i]))
        if i + 1 < len(original):
            cases.append((f"reorder {i}", [*original[:i], original[i + 1], original[i], *original[i + 2:]], seqs[i]))
            cases.append((f"duplicate {i}", [*original[:i + 1], original[i], *original[i + 1:]], seqs[i] + 1))
        cases.append((f"truncate to {i}", original[:i], seqs[i]))
    forged = json.loads(original[3])
    forged["payload"] = {"note": "a record that never happened"}
    forged["hash"] = record_hash(forged["prev_hash"], Record.from_json(forged).content())
    cases.append(("insert forged", [*original[:3], (json.dumps(forged) + "\n").encode(), *original[3:]], seqs[3] + 1))
    for name, lines, seq in cases:
        (pack / "records.jsonl").write_bytes(b"".join(lines))
        with pytest.raises(LedgerIntegrityError) as err:
            verify_pack(pack)
        assert err.value.seq == seq, (name, str(err.value))


def test_chain_recomputed_from_the_middle_is_caught_by_the_manifest(scenario: Scenario) -> None:
    pack = _pack(scenario, "pack")
    base = [json.loads(x) for x in _lines(pack)]
    records = [dict(r, payload=dict(r["payload"])) for r in base]
    rechain(records, len(records) // 2)
    write_records(pack, records)
    with pytest.raises(LedgerIntegrityError, match="rewritten"):
        verify_pack(pack)
    records = [dict(r, payload=dict(r["payload"])) for r in base]
    records[0]["prev_hash"] = "f" * 64  # a new anchor: the chain no longer hangs where the manifest says
    rechain(records, 0)
    write_records(pack, records)
    with pytest.raises(LedgerIntegrityError, match="record 1 does not follow"):
        verify_pack(pack)


def test_rewritten_manifest_passes_unsigned_and_fails_against_a_key(scenario: Scenario,
                                                                     ed25519_keys: tuple[Path, Path]) -> None:
    # without a signature, a pack rewritten end to end (records and manifest) verifies: compare its head
    # hash with the ledger's or a published one. This is the documented limit.
    pack = _pack(scenario, "plain")
    records = [json.loads(x) for x in _lines(pack)]
    rechain(records, 5)
    write_records(pack, records)
    rewrite_manifest(pack, records)
    assert verify_pack_report(pack)[1] == "not signed"

    hmac_signer = HmacSigner(KEY)
    pack = _pack(scenario, "hmac", hmac_signer)
    records = [json.loads(x) for x in _lines(pack)]
    rechain(records, 5)
    write_records(pack, records)
    rewrite_manifest(pack, records)
    assert "not checked" in verify_pack_report(pack)[1]  # HMAC needs the key
    with pytest.raises(LedgerIntegrityError, match="signature does not match"):
        verify_pack(pack, verifier=HmacSigner(KEY))

    private, public = ed25519_keys
    ours = load_signer("ed25519", private.read_bytes())
    pack = _pack(scenario, "ed25519", ours)
    assert verify_pack_report(pack, verifier=load_verifier(public))[1].startswith("verified (ed25519")
    records = [json.loads(x) for x in _lines(pack)]
    rechain(records, 5)
    write_records(pack, records)
    rewrite_manifest(pack, records)
    with pytest.raises(LedgerIntegrityError, match="signature does not match"):
        verify_pack(pack)  # the public key travels in the manifest
    rewrite_manifest(pack, records, drop_signature=True)
    with pytest.raises(LedgerIntegrityError, match="not signed"):
        verify_pack(pack, verifier=load_verifier(public))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    theirs = Ed25519Signer(Ed25519PrivateKey.generate())
    rewrite_manifest(pack, records, resign=theirs)
    assert theirs.key_id in verify_pack_report(pack)[1]  # valid, but for someone else's key id
    with pytest.raises(LedgerIntegrityError, match="not with the given"):
        verify_pack(pack, verifier=load_verifier(public))
    r = cli("evidence", "verify", str(pack), "--key-file", str(public))
    assert r.returncode == 1 and "FAILED" in r.stderr


def test_altered_report_or_summary_is_detected(scenario: Scenario) -> None:
    pack = _pack(scenario, "pack")
    for name in ("report.html", "controls.csv"):
        original = (pack / name).read_bytes()
        (pack / name).write_bytes(original.replace(b"A.6.2.6", b"A.6.2.7", 1))
        r = cli("evidence", "verify", str(pack))
        assert r.returncode == 1 and f"{name} was altered" in r.stderr
        (pack / name).write_bytes(original)
    manifest = json.loads((pack / "manifest.json").read_text())
    del manifest["files"]["report.html"]
    (pack / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LedgerIntegrityError, match=r"does not list report\.html"):
        verify_pack(pack)


def _rewrite_store(store: Store, at: int, *, drop_tail: int = 0) -> None:
    """Someone with write access to the database: alter record ``at``, recompute every hash after it."""
    with store.transaction() as s:
        rows = s.execute(select(EvidenceRecord).where(EvidenceRecord.seq >= at).order_by(EvidenceRecord.seq)
                         ).scalars().all()
        prev = rows[0].prev_hash
        last = rows[-1 - drop_tail] if drop_tail else rows[-1]
        for row in rows:
            if row.seq > last.seq:
                s.delete(row)
                continue
            if row.seq == at:
                row.payload = {**row.payload, "forged": True}
            rec = Record.from_row(row)
            row.prev_hash = prev
            row.hash = record_hash(prev, rec.content())
            prev = row.hash
        s.execute(update(LedgerHead).where(LedgerHead.id == 1).values(seq=last.seq, hash=prev))


def test_rechained_store_passes_without_a_key_and_fails_with_the_signed_head(tmp_path: Path) -> None:
    plain = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    bulk_ledger(plain, 300)
    _rewrite_store(plain, 120, drop_tail=5)
    with plain.session() as s:
        assert check_ledger(s).records == 295  # undetectable without a key: the documented limit
    plain.close()

    signed = Store(f"sqlite:///{tmp_path / 'signed.db'}")
    signer = HmacSigner(KEY)
    bulk_ledger(signed, 300, signer=signer)
    with signed.session() as s:
        assert check_ledger(s, verifier=signer).signature.startswith("verified")
    _rewrite_store(signed, 120)
    with signed.session() as s, pytest.raises(LedgerIntegrityError, match="chain was rewritten"):
        check_ledger(s)  # even without the key: the signed head names the old hash
    with signed.transaction() as s:  # the attacker also moves the signed head's hash; they cannot sign it
        row = s.get(EvidenceRecord, SIGNATURE_SEQ)
        assert row is not None
        head = s.get(LedgerHead, 1)
        assert head is not None
        row.payload = {**row.payload, "hash": head.hash}
    with signed.session() as s:
        assert "not checked" in check_ledger(s).signature
        with pytest.raises(LedgerIntegrityError, match="signature is not valid"):
            check_ledger(s, verifier=signer)
    signed.close()


def test_truncated_signed_store_names_the_first_unsigned_record(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'signed.db'}")
    bulk_ledger(store, 200, signer=HmacSigner(KEY))
    with store.transaction() as s:
        s.execute(EvidenceRecord.__table__.delete().where(EvidenceRecord.seq > 190))
        last = s.get(EvidenceRecord, 190)
        assert last is not None
        s.execute(update(LedgerHead).where(LedgerHead.id == 1).values(seq=190, hash=last.hash))
    with store.session() as s, pytest.raises(LedgerIntegrityError) as err:
        check_ledger(s)
    assert err.value.seq == 191
    store.close()
