"""The evidence ledger: append-only, hash-chained records tagged with the controls they support.

Each record's hash is SHA-256 over its predecessor's hash and the SHA-256 of the canonical JSON of its
own content (seq, timestamp, kind, system, controls, payload). Changing, removing, inserting or reordering any
record breaks every hash after it; ``verify_records`` names the first record that does not fit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.schema import EvidenceRecord, LedgerHead
from config.errors import EvidenceError, LedgerIntegrityError

GENESIS = "0" * 64
SHIPPED_CONTROLS = Path(__file__).resolve().parent.parent / "config" / "controls.yaml"


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they are recorded as null so the record stays canonical."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def canonical(value: Any) -> bytes:
    return json.dumps(_clean(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def content_digest(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(content)).hexdigest()


def chain_hash(prev_hash: str, digest: str) -> str:
    """The chain hashes the content's digest, so a pack can redact a record (keeping its digest) and
    still be verified end to end."""
    return hashlib.sha256(f"{prev_hash}\n{digest}".encode()).hexdigest()


def record_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return chain_hash(prev_hash, content_digest(content))


class ControlMap:
    """Record kind -> controls, from the shipped ``config/controls.yaml`` or the organisation's copy."""

    def __init__(self, path: Path | None = None) -> None:
        src = path or SHIPPED_CONTROLS
        try:
            raw = yaml.safe_load(src.read_text(encoding="utf-8"))
            kinds = raw["kinds"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise EvidenceError(f"cannot read the control mapping {src}: {exc}") from exc
        self.frameworks: dict[str, str] = dict(raw.get("frameworks", {}))
        self._kinds: dict[str, list[str]] = {}
        for kind, by_fw in kinds.items():
            self._kinds[kind] = [f"{fw}:{c}" for fw, ids in (by_fw or {}).items() for c in ids]

    def controls(self, kind: str) -> list[str]:
        return list(self._kinds.get(kind, self._kinds.get("default", [])))


@dataclass(frozen=True)
class Stub:
    """A withheld record: enough to keep the chain verifiable, nothing of its content."""

    seq: int
    content_sha256: str
    prev_hash: str
    hash: str

    def digest(self) -> str:
        return self.content_sha256


@dataclass(frozen=True)
class Record:
    seq: int
    ts: str
    kind: str
    system_id: str | None
    controls: list[str]
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def content(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "system": self.system_id,
            "controls": self.controls,
            "payload": self.payload,
        }

    def digest(self) -> str:
        return content_digest(self.content())

    def to_json(self) -> dict[str, Any]:
        return {**self.content(), "prev_hash": self.prev_hash, "hash": self.hash}

    def stub(self) -> dict[str, Any]:
        """The record with its content withheld (another system's, in a per-system pack)."""
        return {"seq": self.seq, "redacted": True, "content_sha256": self.digest(), "prev_hash": self.prev_hash,
                "hash": self.hash}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Record:
        try:
            return cls(
                seq=int(obj["seq"]),
                ts=str(obj["ts"]),
                kind=str(obj["kind"]),
                system_id=obj.get("system"),
                controls=list(obj["controls"]),
                payload=dict(obj["payload"]),
                prev_hash=str(obj["prev_hash"]),
                hash=str(obj["hash"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"malformed evidence record: {exc}") from exc

    @classmethod
    def from_row(cls, row: EvidenceRecord) -> Record:
        return cls(row.seq, row.ts, row.kind, row.system_id, list(row.controls), dict(row.payload),
                   row.prev_hash, row.hash)


class Ledger:
    """Appends records inside the caller's transaction, so evidence commits with what it describes."""

    def __init__(self, controls: ControlMap | None = None) -> None:
        self.control_map = controls or ControlMap()

    def append(
        self,
        session: Session,
        kind: str,
        payload: Mapping[str, Any],
        *,
        system_id: str | None = None,
        now: datetime | None = None,
    ) -> Record:
        head = session.execute(select(LedgerHead).where(LedgerHead.id == 1).with_for_update()).scalar_one_or_none()
        if head is None:
            head = LedgerHead(id=1, seq=0, hash=GENESIS)
            session.add(head)
            session.flush()
        seq = head.seq + 1
        clean_payload = _clean(dict(payload))
        rec = Record(
            seq=seq,
            ts=iso(now or datetime.now(UTC)),
            kind=kind,
            system_id=system_id,
            controls=self.control_map.controls(kind),
            payload=clean_payload,
            prev_hash=head.hash,
            hash="",
        )
        digest = record_hash(head.hash, rec.content())
        session.add(
            EvidenceRecord(seq=seq, ts=rec.ts, kind=kind, system_id=system_id, controls=rec.controls,
                           payload=clean_payload, prev_hash=head.hash, hash=digest)
        )
        head.seq, head.hash = seq, digest
        return Record(**{**rec.__dict__, "hash": digest})


def verify_records(records: Iterable[Record | Stub], *, expect_start: int | None = 1,
                   expect_prev: str | None = GENESIS) -> int:
    """Check a chain; returns how many records were verified or raises LedgerIntegrityError.

    ``expect_start``/``expect_prev`` anchor the first record (an exported period starts mid-chain:
    pass its manifest's first seq and prev hash; ``None`` accepts whatever the first record says).
    """
    prev_hash = expect_prev
    expected_seq = expect_start
    n = 0
    for rec in records:
        if expected_seq is not None and rec.seq != expected_seq:
            what = "missing" if rec.seq > expected_seq else "out of order or duplicated"
            raise LedgerIntegrityError(
                f"record {expected_seq} is {what} (found seq {rec.seq} in its place)", seq=expected_seq
            )
        if prev_hash is not None and rec.prev_hash != prev_hash:
            raise LedgerIntegrityError(
                f"record {rec.seq} does not follow its predecessor (prev_hash mismatch)", seq=rec.seq
            )
        if chain_hash(rec.prev_hash, rec.digest()) != rec.hash:
            raise LedgerIntegrityError(f"record {rec.seq} was altered (hash mismatch)", seq=rec.seq)
        prev_hash = rec.hash
        expected_seq = rec.seq + 1
        n += 1
    return n


def iter_ledger(session: Session, *, batch: int = 5000) -> Iterator[Record]:
    last = 0
    while True:
        rows = session.execute(
            select(EvidenceRecord).where(EvidenceRecord.seq > last).order_by(EvidenceRecord.seq).limit(batch)
        ).scalars().all()
        if not rows:
            return
        for row in rows:
            yield Record.from_row(row)
        last = rows[-1].seq


def verify_ledger(session: Session) -> int:
    """Verify the whole ledger in the state store, including that the head matches the last record."""
    n = 0
    last: Record | None = None
    for rec in _tracking(iter_ledger(session)):
        n += 1
        last = rec
    head = session.get(LedgerHead, 1)
    if head is not None and (last is None or head.seq != last.seq or head.hash != last.hash):
        at = last.seq + 1 if last else 1
        raise LedgerIntegrityError(f"the ledger ends at {last.seq if last else 0} but its head says "
                                   f"{head.seq}: records were removed from the end", seq=at)
    return n


def _tracking(records: Iterator[Record]) -> Iterator[Record]:
    """Verify while yielding, so verification streams over a ledger of any size."""
    prev = GENESIS
    expected = 1
    for rec in records:
        verify_records([rec], expect_start=expected, expect_prev=prev)
        prev, expected = rec.hash, rec.seq + 1
        yield rec


def read_jsonl(path: Path) -> Iterator[Record | Stub]:
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LedgerIntegrityError(f"line {lineno} of {path.name} is not JSON: {exc.msg}",
                                               seq=None) from exc
                if isinstance(obj, dict) and obj.get("redacted"):
                    try:
                        yield Stub(int(obj["seq"]), str(obj["content_sha256"]), str(obj["prev_hash"]),
                                   str(obj["hash"]))
                    except (KeyError, TypeError, ValueError) as exc:
                        raise LedgerIntegrityError(f"line {lineno}: malformed redacted record", seq=None) from exc
                    continue
                if not isinstance(obj, dict):
                    raise LedgerIntegrityError(f"line {lineno} of {path.name} is not a record", seq=None)
                yield Record.from_json(obj)
    except OSError as exc:
        raise EvidenceError(f"cannot read {path}: {exc.strerror}") from exc
