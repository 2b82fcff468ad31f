"""Evidence retention: purge ledger records older than the retention period, keeping the chain verifiable.

Only a prefix of the chain is ever removed: every record before the first one that is still inside the
retention period. In the same transaction a ``retention_purge`` record is appended at the head naming
the last purged record's seq and hash; ``agent.evidence.ledger_anchor`` reads it, and verification then
starts the chain there instead of at the genesis hash. The purge record is itself chained (and covered
by the signed head), so moving the anchor afterwards breaks the chain.

The EU AI Act asks providers (Art. 19(1)) and deployers (Art. 26(6)) to keep logs for at least six
months: a retention below ``MIN_RETENTION_DAYS`` is refused, and so is a purge "as of" a time in the
future (which would cut records younger than the retention period). A purge first verifies the whole
ledger, with the signing key when one is configured: deleting a tampered prefix would destroy the
evidence of the tampering, and appending to a rewritten chain would sign it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from agent.evidence import SIGNATURE_SEQ, Ledger, check_ledger, iso, ledger_anchor
from agent.schema import EvidenceRecord, LedgerHead
from agent.store import Store
from config.errors import InputError

MIN_RETENTION_DAYS = 183


@dataclass(frozen=True)
class PurgeResult:
    cutoff: str
    retention_days: int
    purged: int
    first_purged_seq: int | None
    last_purged_seq: int | None
    anchor_hash: str | None
    kinds: dict[str, int]
    record_seq: int | None  # the retention_purge record (None on a dry run or when nothing was due)
    dry_run: bool

    def describe(self) -> str:
        if not self.purged:
            return f"nothing to purge: no evidence record before {self.cutoff} ({self.retention_days} days)"
        verb = "would purge" if self.dry_run else "purged"
        tail = "" if self.dry_run else f"; new chain anchor recorded as record {self.record_seq}"
        return (f"{verb} {self.purged} record(s) {self.first_purged_seq}..{self.last_purged_seq} older than "
                f"{self.cutoff} ({self.retention_days} days){tail}")


def purge(store: Store, ledger: Ledger, now: datetime, retention_days: int, *, dry_run: bool = False) -> PurgeResult:
    """Remove records older than ``retention_days`` before ``now`` and record the new anchor.

    Raises ``InputError`` for a retention below six months or a ``now`` in the future (a dry run may look
    ahead), and ``LedgerIntegrityError`` when the ledger does not verify: nothing is deleted then.
    """
    if retention_days < MIN_RETENTION_DAYS:
        raise InputError(f"retention of {retention_days} days is below the EU AI Act minimum of six months "
                         f"({MIN_RETENTION_DAYS} days; Arts. 19(1) and 26(6))")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if not dry_run and now > datetime.now(UTC):
        raise InputError(f"cannot purge as of {iso(now)}: that is in the future, and would remove records "
                         f"younger than {retention_days} days (use --dry-run to look ahead)")
    cutoff = iso(now - timedelta(days=retention_days))
    with store.transaction() as s:
        # hold the head while verifying and cutting, so no record is appended in between
        s.execute(select(LedgerHead).where(LedgerHead.id == 1).with_for_update())
        check_ledger(s, verifier=ledger.signer)
        start, _ = ledger_anchor(s)
        # the first record still inside the period ends the purgeable prefix, even if a later record
        # carries an older timestamp: the chain is only ever cut at one place
        keep_from = s.execute(select(func.min(EvidenceRecord.seq)).where(
            EvidenceRecord.seq > SIGNATURE_SEQ, EvidenceRecord.ts >= cutoff)).scalar_one_or_none()
        if keep_from is None:
            keep_from = (s.execute(select(func.max(EvidenceRecord.seq))).scalar_one_or_none() or 0) + 1
        rows = s.execute(select(EvidenceRecord.seq, EvidenceRecord.kind, EvidenceRecord.hash).where(
            EvidenceRecord.seq > SIGNATURE_SEQ, EvidenceRecord.seq < keep_from).order_by(EvidenceRecord.seq)).all()
        if not rows:
            return PurgeResult(cutoff, retention_days, 0, None, None, None, {}, None, dry_run)
        first, last, anchor = rows[0].seq, rows[-1].seq, rows[-1].hash
        kinds = dict(Counter(r.kind for r in rows))
        if dry_run:
            return PurgeResult(cutoff, retention_days, len(rows), first, last, anchor, kinds, None, True)
        s.execute(delete(EvidenceRecord).where(EvidenceRecord.seq > SIGNATURE_SEQ, EvidenceRecord.seq <= last))
        record = ledger.append(s, "retention_purge", {
            "cutoff": cutoff, "retention_days": retention_days, "purged_count": len(rows),
            "purged_first_seq": first, "purged_through_seq": last, "anchor_hash": anchor,
            "previous_anchor_seq": start - 1, "kinds": kinds,
        }, now=now)
    return PurgeResult(cutoff, retention_days, len(rows), first, last, anchor, kinds, record.seq, False)
