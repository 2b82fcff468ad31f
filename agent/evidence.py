"""The evidence ledger: append-only, hash-chained records tagged with the controls they support.

Each record's hash is SHA-256 over its predecessor's hash and the SHA-256 of the canonical JSON of its
own content (seq, timestamp, kind, system, controls, payload). Changing, removing, inserting or reordering any
record breaks every hash after it; ``verify_records`` names the first record that does not fit.

Two additions keep that property through the ledger's life:

- **Signed head.** With a key configured (HMAC-SHA256 or Ed25519), every append also signs the new head
  (seq and hash). The signature lives in the ledger's genesis slot (row ``seq = 0``, kind
  ``ledger_head_signature``), outside the chain, so someone with write access to the database who
  rewrites records and recomputes every hash still cannot produce a head signature.
- **Retention anchor.** Purging old records (``agent.retention``) appends a ``retention_purge`` record
  naming the last purged record's seq and hash; verification starts the chain there instead of at the
  genesis hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.schema import EvidenceRecord, LedgerHead
from config.errors import ConfigError, EvidenceError, LedgerIntegrityError, Problem
from config.loader import resolve_path
from config.model import EvidenceConfig

GENESIS = "0" * 64
SHIPPED_CONTROLS = Path(__file__).resolve().parent.parent / "config" / "controls.yaml"
SIGNATURE_SEQ = 0  # the genesis slot: never part of the chain, which starts at 1
SIGNATURE_KIND = "ledger_head_signature"
HEAD_FORMAT = "aims-ledger-head/1"

# Record kinds the agent writes (an organisation's mapping may add its own; unknown kinds get `default`).
RECORD_KINDS = (
    "config_loaded", "check_run", "check_failed", "decision_changed", "incident_opened", "incident_updated",
    "incident_resolved", "notification_delivered", "notification_failed", "human_override",
    "model_version_changed", "reassessment_trigger", "reference_frozen", "retention_purge",
)
RESULT_SECTIONS = ("drift", "prediction_drift", "data_quality", "fairness", "performance")

# ISO/IEC 42001:2023 Annex A: the 38 assessable controls (titles as in CISO Assistant's library) and how
# much of each the agent can evidence: primary, supporting or organisational (nothing at run time).
ANNEX_A: dict[str, tuple[str, str]] = {
    "A.2.2": ("AI policy", "organisational"),
    "A.2.3": ("Alignment with other organizational policies", "organisational"),
    "A.2.4": ("Review of the AI policy", "organisational"),
    "A.3.2": ("AI roles and responsibilities", "supporting"),
    "A.3.3": ("Reporting of concerns", "supporting"),
    "A.4.2": ("Resource documentation", "supporting"),
    "A.4.3": ("Data resources", "supporting"),
    "A.4.4": ("Tooling resources", "supporting"),
    "A.4.5": ("System and computing resources", "primary"),
    "A.4.6": ("Human resources", "organisational"),
    "A.5.2": ("AI system impact assessment process", "supporting"),
    "A.5.3": ("Documentation of AI system impact assessments", "supporting"),
    "A.5.4": ("Assessing AI system impact on individuals or groups of individuals", "primary"),
    "A.5.5": ("Assessing societal impacts of AI systems", "supporting"),
    "A.6.1.2": ("Objectives for responsible development of AI system", "supporting"),
    "A.6.1.3": ("Processes for responsible AI system design and development", "organisational"),
    "A.6.2.2": ("AI system requirements and specification", "supporting"),
    "A.6.2.3": ("Documentation of AI system design and development", "organisational"),
    "A.6.2.4": ("AI system verification and validation", "supporting"),
    "A.6.2.5": ("AI system deployment", "supporting"),
    "A.6.2.6": ("AI system operation and monitoring", "primary"),
    "A.6.2.7": ("AI system technical documentation", "supporting"),
    "A.6.2.8": ("AI system recording of event logs", "primary"),
    "A.7.2": ("Data for development and enhancement of AI system", "supporting"),
    "A.7.3": ("Acquisition of data", "organisational"),
    "A.7.4": ("Quality of data for AI systems", "primary"),
    "A.7.5": ("Data provenance", "supporting"),
    "A.7.6": ("Data preparation", "supporting"),
    "A.8.2": ("System documentation and information for users", "supporting"),
    "A.8.3": ("External reporting", "supporting"),
    "A.8.4": ("Communication of incidents", "primary"),
    "A.8.5": ("Information for interested parties", "supporting"),
    "A.9.2": ("Processes for responsible use of AI systems", "supporting"),
    "A.9.3": ("Objectives for responsible use of AI system", "supporting"),
    "A.9.4": ("Intended use of the AI system", "primary"),
    "A.10.2": ("Allocating responsibilities", "organisational"),
    "A.10.3": ("Suppliers", "supporting"),
    "A.10.4": ("Customers", "supporting"),
}

# How a control id of each well-known framework is spelled; a framework the organisation declares
# itself may give its own `id_pattern`.
ID_PATTERNS = {
    "iso42001": r"A\.(?:[2-9]|10)\.\d+(?:\.\d+)?",
    "iso27001": r"A\.[5-8]\.\d{1,2}",
    "eu_ai_act": r"Art\. \d{1,3}(?:\(\d{1,2}\))?(?:\([a-z]\))?",
    "nist_ai_rmf": r"(?:GOVERN|MAP|MEASURE|MANAGE) \d{1,2}\.\d{1,2}",
}
_ANY_ID = r"[^\s:][^:]{0,79}"
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


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


def canonical_parsed(value: Any) -> bytes:
    """``canonical`` for values decoded from JSON (string keys, no datetimes): skips the cleaning walk,
    which is most of the cost of verifying a large ledger. NaN, which JSON text may smuggle in, takes the
    slow path so the result is always what ``canonical`` gives."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError):
        return canonical(value)


def iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def content_digest(content: Mapping[str, Any], *, parsed: bool = False) -> str:
    return hashlib.sha256(canonical_parsed(content) if parsed else canonical(content)).hexdigest()


def chain_hash(prev_hash: str, digest: str) -> str:
    """The chain hashes the content's digest, so a pack can redact a record (keeping its digest) and
    still be verified end to end."""
    return hashlib.sha256(f"{prev_hash}\n{digest}".encode()).hexdigest()


def record_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return chain_hash(prev_hash, content_digest(content))


# -- control mapping -------------------------------------------------------------------------------
class ControlMap:
    """Record kind -> controls, from the shipped ``config/controls.yaml`` or the organisation's copy.

    The file is validated when loaded: unknown top-level keys, frameworks used but not declared, and
    control ids that do not look like ids of their framework (or, for ISO 42001, are not in Annex A)
    are reported all at once as a :class:`ConfigError`.
    """

    def __init__(self, path: Path | None = None) -> None:
        src = path or SHIPPED_CONTROLS
        self.source = src
        try:
            raw = yaml.safe_load(src.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([Problem("", f"cannot read the control mapping: {exc.strerror}")], str(src)) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([Problem("", f"the control mapping is not valid YAML: {exc}")], str(src)) from exc
        problems: list[Problem] = []
        self.frameworks: dict[str, str] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._kinds: dict[str, list[str]] = {}
        self._results: dict[str, list[str]] = {}
        self.titles: dict[str, str] = {}
        self.not_applicable: set[str] = set()
        if not isinstance(raw, dict):
            raise ConfigError([Problem("", "the control mapping must be a mapping with `frameworks` and `kinds`")],
                              str(src))
        for key in sorted(set(raw) - {"frameworks", "kinds", "results", "titles", "not_applicable"}):
            problems.append(Problem(key, "unknown key (expected frameworks, kinds, results, titles, not_applicable)"))
        self._load_frameworks(raw.get("frameworks"), problems)
        kinds = raw.get("kinds")
        if not isinstance(kinds, dict) or not kinds:
            problems.append(Problem("kinds", "required: a mapping of record kind -> framework -> control ids"))
            kinds = {}
        for kind, by_fw in kinds.items():
            if not isinstance(kind, str) or not _KIND.match(kind):
                problems.append(Problem(f"kinds.{kind}", "a record kind is lower_snake_case"))
                continue
            self._kinds[kind] = self._controls(f"kinds.{kind}", by_fw, problems)
        results = raw.get("results") or {}
        if not isinstance(results, dict):
            problems.append(Problem("results", "must map a check-run result section to controls"))
            results = {}
        for section, by_fw in results.items():
            if section not in RESULT_SECTIONS:
                problems.append(Problem(f"results.{section}", f"unknown result section (one of "
                                        f"{', '.join(RESULT_SECTIONS)})"))
                continue
            self._results[section] = self._controls(f"results.{section}", by_fw, problems)
        titles = raw.get("titles") or {}
        for fw, by_id in (titles.items() if isinstance(titles, dict) else []):
            if fw not in self.frameworks:
                problems.append(Problem(f"titles.{fw}", "unknown framework (declare it under `frameworks`)"))
                continue
            for cid, title in (by_id or {}).items():
                self.titles[f"{fw}:{cid}"] = str(title)
        for cid, (title, _) in ANNEX_A.items():
            self.titles.setdefault(f"iso42001:{cid}", title)
        for ctl in self._controls("not_applicable", raw.get("not_applicable") or {}, problems):
            self.not_applicable.add(ctl)
        if problems:
            raise ConfigError(problems, str(src))

    def _load_frameworks(self, frameworks: Any, problems: list[Problem]) -> None:
        if not isinstance(frameworks, dict) or not frameworks:
            problems.append(Problem("frameworks", "required: a mapping of framework key -> title"))
            return
        for fw, spec in frameworks.items():
            if not isinstance(fw, str) or not _KIND.match(fw):
                problems.append(Problem(f"frameworks.{fw}", "a framework key is lower_snake_case"))
                continue
            pattern = ID_PATTERNS.get(fw, _ANY_ID)
            if isinstance(spec, str):
                title = spec
            elif isinstance(spec, dict) and set(spec) <= {"title", "id_pattern"} and "title" in spec:
                title = str(spec["title"])
                pattern = str(spec.get("id_pattern", pattern))
            else:
                problems.append(Problem(f"frameworks.{fw}", "give a title, or a mapping with `title` and an "
                                        "optional `id_pattern`"))
                continue
            try:
                self._patterns[fw] = re.compile(f"^(?:{pattern})$")
            except re.error as exc:
                problems.append(Problem(f"frameworks.{fw}.id_pattern", f"not a regular expression: {exc}"))
                continue
            self.frameworks[fw] = title

    def _controls(self, path: str, by_fw: Any, problems: list[Problem]) -> list[str]:
        out: list[str] = []
        if by_fw is None:
            return out
        if not isinstance(by_fw, dict):
            problems.append(Problem(path, "must map framework keys to lists of control ids"))
            return out
        for fw, ids in by_fw.items():
            if fw not in self.frameworks:
                if fw not in self._patterns:  # an invalid declaration was reported already
                    problems.append(Problem(f"{path}.{fw}", f"unknown framework {fw!r} (declared: "
                                            f"{', '.join(sorted(self.frameworks)) or 'none'})"))
                continue
            if not isinstance(ids, list):
                problems.append(Problem(f"{path}.{fw}", "must be a list of control ids"))
                continue
            for i, cid in enumerate(ids):
                if not isinstance(cid, str) or not self._patterns[fw].match(cid):
                    problems.append(Problem(f"{path}.{fw}.{i}", f"{cid!r} is not a {fw} control id"))
                elif fw == "iso42001" and cid not in ANNEX_A:
                    problems.append(Problem(f"{path}.{fw}.{i}", f"{cid} is not an ISO/IEC 42001 Annex A control"))
                else:
                    out.append(f"{fw}:{cid}")
        return out

    def controls(self, kind: str, payload: Mapping[str, Any] | None = None) -> list[str]:
        """The controls a record supports: its kind's, plus those of each result section a check run carries,
        less those the Statement of Applicability excludes (``not_applicable``)."""
        out = list(self._kinds.get(kind, self._kinds.get("default", [])))
        results = payload.get("results") if payload else None
        if isinstance(results, Mapping):
            for section in RESULT_SECTIONS:
                if results.get(section):
                    out.extend(self._results.get(section, []))
        return [c for c in dict.fromkeys(out) if c not in self.not_applicable]

    def title(self, control: str) -> str:
        if control in self.titles:
            return self.titles[control]
        base = control.split("(", 1)[0]  # "eu_ai_act:Art. 26(5)" -> the article's title
        return self.titles.get(base, "")

    def catalogue(self) -> list[str]:
        """Annex A, in order: the controls whose absence of evidence a pack reports."""
        return [f"iso42001:{cid}" for cid in ANNEX_A]


# -- signing the head ------------------------------------------------------------------------------
class HeadSigner(Protocol):
    """Signs and checks a ledger head or a pack manifest. HMAC keys do both; a public key only checks."""

    algorithm: str
    key_id: str

    def sign(self, message: bytes) -> str: ...

    def verify(self, message: bytes, signature: str) -> bool: ...

    def public(self) -> dict[str, str]: ...


class HmacSigner:
    """HMAC-SHA256 with a shared secret: the verifier needs the same secret."""

    algorithm = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise EvidenceError("the HMAC signing key is too short (use at least 16 bytes, e.g. 32 random bytes)")
        self._key = key
        # domain-separated so the id can be published without being an HMAC of anything we sign
        self.key_id = hashlib.sha256(b"aims-agent hmac key id\n" + key).hexdigest()[:16]

    def sign(self, message: bytes) -> str:
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, message: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(message), signature)

    def public(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "key_id": self.key_id}


class Ed25519Signer:
    """Ed25519: the agent holds the private key; auditors check with the published public key."""

    algorithm = "ed25519"

    def __init__(self, private_key: Any | None = None, *, public_key: Any | None = None) -> None:
        if private_key is None and public_key is None:
            raise EvidenceError("an Ed25519 key needs a private or a public key")
        self._private = private_key
        self._public: Any = public_key if public_key is not None else private_key.public_key()  # type: ignore[union-attr]
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.public_raw = self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = hashlib.sha256(self.public_raw).hexdigest()[:16]

    def sign(self, message: bytes) -> str:
        if self._private is None:
            raise EvidenceError("this Ed25519 key is a public key: it can verify but not sign")
        return str(self._private.sign(message).hex())

    def verify(self, message: bytes, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self._public.verify(bytes.fromhex(signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def public(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "key_id": self.key_id,
                "public_key": base64.b64encode(self.public_raw).decode()}

    @classmethod
    def from_public_raw(cls, raw_b64: str) -> Ed25519Signer:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            return cls(public_key=Ed25519PublicKey.from_public_bytes(base64.b64decode(raw_b64)))
        except ValueError as exc:
            raise EvidenceError(f"not an Ed25519 public key: {exc}") from exc


def load_signer(algorithm: str, key: bytes) -> HeadSigner:
    """A signer from key material: an HMAC secret, or an Ed25519 private key in PEM."""
    if algorithm == "hmac-sha256":
        return HmacSigner(key.strip())
    if algorithm != "ed25519":
        raise EvidenceError(f"unknown signing algorithm {algorithm!r} (hmac-sha256 or ed25519)")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError as exc:
        raise EvidenceError("Ed25519 signing needs the `cryptography` package (pip install "
                            "'aims-agent[signing]')") from exc
    try:
        private = load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceError("the Ed25519 signing key is not an unencrypted PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise EvidenceError("the signing key is a PEM private key but not an Ed25519 one")
    return Ed25519Signer(private)


def load_verifier(path: Path) -> HeadSigner:
    """What an auditor checks a signature with: an Ed25519 public key (PEM) or the shared HMAC secret."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvidenceError(f"cannot read the key file {path}: {exc.strerror}") from exc
    if b"-----BEGIN PUBLIC KEY-----" in data:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        public = load_pem_public_key(data)
        if not isinstance(public, Ed25519PublicKey):
            raise EvidenceError(f"{path} holds a public key but not an Ed25519 one")
        return Ed25519Signer(public_key=public)
    if b"PRIVATE KEY-----" in data:
        return load_signer("ed25519", data)
    return HmacSigner(data.strip())


def head_message(seq: int, head_hash: str) -> bytes:
    return canonical({"format": HEAD_FORMAT, "seq": seq, "hash": head_hash})


@dataclass(frozen=True)
class SignedHead:
    seq: int
    hash: str
    algorithm: str
    key_id: str
    signature: str
    signed_at: str


def read_signed_head(session: Session) -> SignedHead | None:
    row = session.get(EvidenceRecord, SIGNATURE_SEQ)
    if row is None:
        return None
    p = row.payload
    try:
        return SignedHead(int(p["seq"]), str(p["hash"]), str(p["algorithm"]), str(p["key_id"]),  # type: ignore[call-overload]
                          str(p["signature"]), str(p["signed_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerIntegrityError("the ledger's signed head is malformed", seq=None) from exc


# -- records ---------------------------------------------------------------------------------------
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
    # decoded from JSON (a pack or the store), so its digest may take the fast canonical path
    parsed: bool = field(default=False, compare=False, repr=False)

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
        return content_digest(self.content(), parsed=self.parsed)

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
                parsed=True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"malformed evidence record: {exc}") from exc

    @classmethod
    def from_row(cls, row: EvidenceRecord) -> Record:
        return cls(row.seq, row.ts, row.kind, row.system_id, list(row.controls), dict(row.payload),
                   row.prev_hash, row.hash, parsed=True)


class Ledger:
    """Appends records inside the caller's transaction, so evidence commits with what it describes."""

    def __init__(self, controls: ControlMap | None = None, *, signer: HeadSigner | None = None) -> None:
        self.control_map = controls or ControlMap()
        self.signer = signer

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
            controls=self.control_map.controls(kind, clean_payload),
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
        if self.signer is not None:
            self._sign_head(session, seq, digest, rec.ts)
        return Record(**{**rec.__dict__, "hash": digest, "parsed": False})

    def _sign_head(self, session: Session, seq: int, head_hash: str, ts: str) -> None:
        assert self.signer is not None
        payload = {"seq": seq, "hash": head_hash, "algorithm": self.signer.algorithm, "key_id": self.signer.key_id,
                   "signature": self.signer.sign(head_message(seq, head_hash)), "signed_at": ts}
        row = session.get(EvidenceRecord, SIGNATURE_SEQ)
        if row is None:
            session.add(EvidenceRecord(seq=SIGNATURE_SEQ, ts=ts, kind=SIGNATURE_KIND, system_id=None, controls=[],
                                       payload=payload, prev_hash=head_hash, hash=GENESIS))
        else:  # a new dict, so the JSON column is seen as changed
            row.payload, row.ts, row.prev_hash = payload, ts, head_hash


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


def iter_ledger(session: Session, *, batch: int = 5000, after: int = 0) -> Iterator[Record]:
    last = max(after, SIGNATURE_SEQ)
    while True:
        rows = session.execute(
            select(EvidenceRecord).where(EvidenceRecord.seq > last).order_by(EvidenceRecord.seq).limit(batch)
        ).scalars().all()
        if not rows:
            return
        for row in rows:
            yield Record.from_row(row)
        last = rows[-1].seq


def ledger_anchor(session: Session) -> tuple[int, str]:
    """Where the chain starts: seq 1 after the genesis hash, or just after the last retention purge."""
    row = session.execute(select(EvidenceRecord).where(EvidenceRecord.kind == "retention_purge",
                                                       EvidenceRecord.seq > SIGNATURE_SEQ)
                          .order_by(EvidenceRecord.seq.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        return 1, GENESIS
    try:
        return int(row.payload["purged_through_seq"]) + 1, str(row.payload["anchor_hash"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerIntegrityError(f"retention record {row.seq} has no usable anchor", seq=row.seq) from exc


@dataclass(frozen=True)
class LedgerVerification:
    records: int
    first_seq: int | None
    head_seq: int
    head_hash: str
    signature: str  # "verified", "not signed", or why it was not checked

    def describe(self) -> str:
        start = f", chain from record {self.first_seq}" if self.first_seq not in (None, 1) else ""
        return f"ledger intact: {self.records} records{start}; head signature: {self.signature}"


def check_ledger(session: Session, *, verifier: HeadSigner | None = None) -> LedgerVerification:
    """Verify the whole ledger in the state store: the chain from its anchor, the head row, and the
    signed head (with ``verifier``; without one, only that the signed head names the last record)."""
    start, prev = ledger_anchor(session)
    n = 0
    last: Record | None = None
    for rec in iter_verified(iter_ledger(session), start, prev):
        n += 1
        last = rec
    head = session.get(LedgerHead, 1)
    head_seq, head_hash = (last.seq, last.hash) if last else (start - 1, prev)
    if head is not None and (head.seq != head_seq or head.hash != head_hash):
        raise LedgerIntegrityError(f"the ledger ends at {head_seq} but its head says "
                                   f"{head.seq}: records were removed from the end", seq=head_seq + 1)
    signed = read_signed_head(session)
    status = check_signed_head(signed, head_seq, head_hash, verifier)
    return LedgerVerification(n, start if n else None, head_seq, head_hash, status)


def check_signed_head(signed: SignedHead | None, head_seq: int, head_hash: str, verifier: HeadSigner | None) -> str:
    if signed is None:
        if verifier is not None and head_seq > 0:
            raise LedgerIntegrityError("a signing key is configured but the ledger's head is not signed",
                                       seq=None)
        return "not signed"
    if signed.seq != head_seq:
        first = min(signed.seq, head_seq) + 1
        raise LedgerIntegrityError(f"the signed head is record {signed.seq} but the ledger ends at {head_seq}: "
                                   f"records from {first} are not covered by the signature", seq=first)
    if signed.hash != head_hash:
        raise LedgerIntegrityError(f"the signed head hash differs from record {head_seq}'s: the chain was "
                                   "rewritten", seq=head_seq)
    if verifier is None:
        return f"present ({signed.algorithm}, key {signed.key_id}), not checked without the key"
    if signed.key_id != verifier.key_id or signed.algorithm != verifier.algorithm:
        raise LedgerIntegrityError(f"the head is signed with {signed.algorithm} key {signed.key_id}, not the "
                                   f"configured {verifier.algorithm} key {verifier.key_id}", seq=None)
    if not verifier.verify(head_message(signed.seq, signed.hash), signed.signature):
        raise LedgerIntegrityError("the head signature is not valid: the ledger was rewritten", seq=None)
    return f"verified ({signed.algorithm}, key {signed.key_id})"


def verify_ledger(session: Session, *, verifier: HeadSigner | None = None) -> int:
    """Verify the whole ledger in the state store, including that the head matches the last record."""
    return check_ledger(session, verifier=verifier).records


def iter_verified(records: Iterator[Record], start: int = 1, prev: str = GENESIS) -> Iterator[Record]:
    """Verify while yielding, so verification streams over a ledger of any size."""
    expected = start
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
                try:
                    yield Record.from_json(obj)
                except EvidenceError as exc:
                    raise LedgerIntegrityError(f"line {lineno} of {path.name}: {exc}", seq=None) from exc
    except UnicodeDecodeError as exc:
        raise LedgerIntegrityError(f"{path.name} is not UTF-8 text (byte {exc.start} of a line was altered)",
                                   seq=None) from exc
    except OSError as exc:
        raise EvidenceError(f"cannot read {path}: {exc.strerror}") from exc


def signer_from_config(evidence_cfg: EvidenceConfig, base_dir: Path | None = None) -> HeadSigner | None:
    """The head signer configured under ``agent.evidence.signing`` (None when signing is off)."""
    signing = evidence_cfg.signing
    if signing is None:
        return None
    if signing.key is not None:
        material = signing.key.get_secret_value().encode()
    else:
        assert signing.key_file is not None  # the config model requires one of the two
        path = resolve_path(signing.key_file, base_dir)
        try:
            material = path.read_bytes()
        except OSError as exc:
            raise EvidenceError(f"cannot read the signing key file {path}: {exc.strerror}") from exc
    return load_signer(signing.algorithm, material)


def ledger_from_config(evidence_cfg: EvidenceConfig, base_dir: Path | None = None) -> Ledger:
    """The ledger as configured: the organisation's control mapping and, if set, the head signer."""
    controls_file = evidence_cfg.controls_file
    controls = ControlMap(resolve_path(controls_file, base_dir)) if controls_file else None
    return Ledger(controls, signer=signer_from_config(evidence_cfg, base_dir))
