"""Evidence packs for auditors: export a period of the ledger and verify a pack (or a ledger) offline.

A pack is a folder:

- ``records.jsonl``: the chain for the period (with ``system``, other systems' records are withheld as
  digests so the chain still verifies);
- ``controls.csv``: records per control (framework, control, title, records, kinds, first, last), plus
  every ISO/IEC 42001 Annex A control that has no evidence in the period;
- ``report.html``: a self-contained report with drift, fairness and performance charts per system and
  each incident's timeline;
- ``manifest.json``: period, the chain's anchor (the hash before the first record) and head, the SHA-256
  of every file and, when a signing key is configured, a signature over all of that.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import Text, func, select, type_coerce
from sqlalchemy.orm import Session

from agent import __version__
from agent.evidence import (
    ANNEX_A,
    GENESIS,
    SIGNATURE_SEQ,
    ControlMap,
    Ed25519Signer,
    HeadSigner,
    Record,
    Stub,
    canonical,
    check_ledger,
    check_signed_head,
    iso,
    iter_ledger,
    iter_verified,
    load_verifier,
    read_jsonl,
    read_signed_head,
    verify_records,
)
from agent.report import REPORTED_KINDS, ControlRow, ReportData, render_html
from agent.schema import EvidenceRecord
from agent.store import Store
from config.errors import AimsError, EvidenceError, InputError, LedgerIntegrityError
from config.model import EvidenceConfig

if TYPE_CHECKING:
    from connectors.grc.ciso_assistant import PushResult

FORMAT = "aims-evidence-pack/2"
FORMATS = {"aims-evidence-pack/1": ("records.jsonl", "controls.csv"),
           FORMAT: ("records.jsonl", "controls.csv", "report.html")}
SIGNATURE_FORMAT = "aims-evidence-pack-signature/1"
PACK_FILES = ("manifest.json", "records.jsonl", "controls.csv", "report.html")
ZIP_FOLDER = "evidence-pack"
MAX_UNZIPPED = 4 << 30  # a pack of 100,000 records is about 230 MB unpacked
CSV_HEADER = ["framework", "control", "title", "records", "kinds", "first", "last", "agent", "applicable"]


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


def _control_key(control: str) -> tuple[int, str, list[Any]]:
    fw, _, cid = control.partition(":")
    order = {"iso42001": 0, "iso27001": 1, "eu_ai_act": 2, "nist_ai_rmf": 3}.get(fw, 9)
    return order, fw, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", cid)]


def control_rows(per_control: dict[str, dict[str, Any]], control_map: ControlMap) -> list[ControlRow]:
    """The per-control summary: controls with evidence, Annex A controls without any, and the controls the
    Statement of Applicability excludes. An excluded control is listed as not applicable and counts no
    records, even when records written before the exclusion carry it: the pack must not present evidence
    for a control the SoA says does not apply (and the GRC push never links one)."""
    none: dict[str, Any] = {"records": 0, "kinds": set(), "first": None, "last": None}
    rows = []
    every = set(per_control) | set(control_map.catalogue()) | control_map.not_applicable
    for control in sorted(every, key=_control_key):
        fw, _, cid = control.partition(":")
        applicable = control not in control_map.not_applicable
        pc = per_control.get(control, none) if applicable else none
        agent = ANNEX_A[cid][1] if fw == "iso42001" and cid in ANNEX_A else ""
        rows.append(ControlRow(fw, cid, control_map.title(control), pc["records"], sorted(pc["kinds"]),
                               pc["first"], pc["last"], agent, applicable))
    return rows


def export_pack(store: Store, out: Path, *, since: str | None = None, until: str | None = None,
                system: str | None = None, signer: HeadSigner | None = None,
                control_map: ControlMap | None = None) -> dict[str, Any]:
    """Write a pack for ``[since, until)`` into ``out`` and return its manifest.

    With ``signer``, the ledger from the pack's first record to its head is verified against the
    ledger's signed head first (a rewritten ledger is never signed), then the manifest is signed.
    """
    control_map = control_map or ControlMap()
    lo, hi = _parse_when(since, "since"), _parse_when(until, "until")
    out.mkdir(parents=True, exist_ok=True)
    per_control: dict[str, dict[str, Any]] = defaultdict(lambda: {"records": 0, "kinds": set(), "first": None,
                                                                  "last": None})
    report = ReportData()
    count = total = 0
    first_seq = last_seq = None
    anchor = GENESIS
    head = GENESIS
    records_path = out / "records.jsonl"
    t = EvidenceRecord.__table__.c
    # the JSON columns are read as their stored text and written into the pack as they are: decoding and
    # re-encoding every payload would be most of the export's time
    # the period selects a range of the chain: from the first record stamped inside it to the last one.
    # Timestamps need not rise with seq (a check judged "as of" an earlier time, the API's wall clock),
    # so the range is then exported whole, by seq, and every record in it counted as outside or inside.
    bounds = select(func.min(t.seq), func.max(t.seq)).where(t.seq > SIGNATURE_SEQ)
    if lo:
        bounds = bounds.where(t.ts >= lo)
    if hi:
        bounds = bounds.where(t.ts < hi)
    q = select(t.seq, t.ts, t.kind, t.system_id, type_coerce(t.controls, Text), type_coerce(t.payload, Text),
               t.prev_hash, t.hash).order_by(t.seq)
    controls_cache: dict[str, list[str]] = {}
    outside = 0
    with store.session() as s:
        lo_seq, hi_seq = s.execute(bounds).one()
        q = q.where(t.seq >= (lo_seq if lo_seq is not None else 1), t.seq <= (hi_seq if hi_seq is not None else 0))
        with records_path.open("w", encoding="utf-8") as fh:
            for seq, ts, kind, system_id, controls_raw, payload_raw, prev_hash, rec_hash in s.execute(
                    q.execution_options(yield_per=2000)):
                controls_text = _json_text(controls_raw)
                payload_text = _json_text(payload_raw)
                if first_seq is None:
                    first_seq, anchor = seq, prev_hash
                elif last_seq is not None and seq != last_seq + 1:
                    raise EvidenceError(f"ledger records {last_seq + 1}..{seq - 1} are missing from the store")
                last_seq, head = seq, rec_hash
                total += 1
                if (lo and ts < lo) or (hi and ts >= hi):
                    outside += 1
                controls = controls_cache.get(controls_text)
                if controls is None:
                    controls = controls_cache.setdefault(controls_text, json.loads(controls_text))
                wanted = not system or system_id in (system, None)
                if not wanted or kind in REPORTED_KINDS:
                    rec = Record(seq, ts, kind, system_id, controls, json.loads(payload_text), prev_hash, rec_hash,
                                 parsed=True)
                    if not wanted:
                        fh.write(json.dumps(rec.stub(), sort_keys=True) + "\n")
                        continue
                    report.add(rec)
                else:
                    report.count(ts, kind, system_id, controls)
                fh.write(f'{{"controls":{controls_text},"hash":"{rec_hash}","kind":{json.dumps(kind)},'
                         f'"payload":{payload_text},"prev_hash":"{prev_hash}","seq":{seq},'
                         f'"system":{json.dumps(system_id)},"ts":{json.dumps(ts)}}}\n')
                count += 1
                for control in controls:
                    pc = per_control[control]
                    pc["records"] += 1
                    pc["kinds"].add(kind)
                    pc["first"] = min(pc["first"] or ts, ts)
                    pc["last"] = max(pc["last"] or ts, ts)
        ledger_len = s.execute(select(func.count()).select_from(EvidenceRecord)
                               .where(EvidenceRecord.seq > SIGNATURE_SEQ)).scalar_one()
        if signer is not None:
            _check_before_signing(s, signer, first_seq, anchor, last_seq, head, records_path)
    rows = control_rows(per_control, control_map)
    controls_path = out / "controls.csv"
    with controls_path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for r in rows:
            w.writerow([r.framework, r.control, r.title, r.records, " ".join(r.kinds), r.first or "", r.last or "",
                        r.agent, "yes" if r.applicable else "no"])
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "generator": f"aims-agent {__version__}",
        "generated_at": iso(datetime.now(UTC)),
        "period": {"since": lo, "until": hi},
        "system": system,
        "records": count,
        "chain": {"first_seq": first_seq, "last_seq": last_seq, "anchor_prev_hash": anchor, "head_hash": head,
                  "length": total, "stamped_outside_period": outside, "ledger_records_at_export": ledger_len},
        "controls_source": str(control_map.source.name),
    }
    report_path = out / "report.html"
    report_path.write_text(render_html(report, manifest=manifest, controls=rows), encoding="utf-8")
    manifest["files"] = {p.name: sha256_file(p) for p in (records_path, controls_path, report_path)}
    if signer is not None:
        manifest["signature"] = {**signer.public(), "value": signer.sign(_signed_content(manifest))}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _check_before_signing(s: Any, signer: HeadSigner, first_seq: int | None, anchor: str, last_seq: int | None,
                          head: str, records_path: Path) -> None:
    """The exported records, and everything after them up to the ledger's signed head, must verify."""
    if first_seq is None or last_seq is None:  # an empty period: the whole ledger must verify instead
        check_ledger(s, verifier=signer)
        return
    verify_records(read_jsonl(records_path), expect_start=first_seq, expect_prev=anchor)
    end_seq, end_hash = last_seq, head
    for rec in iter_verified(iter_ledger(s, after=last_seq), last_seq + 1, head):
        end_seq, end_hash = rec.seq, rec.hash
    check_signed_head(read_signed_head(s), end_seq, end_hash, signer)


def _json_text(value: Any) -> str:
    """A JSON column's stored text (drivers that decode JSON themselves hand back the value instead)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _signed_content(manifest: dict[str, Any]) -> bytes:
    return canonical({"signature_format": SIGNATURE_FORMAT,
                      **{k: v for k, v in manifest.items() if k != "signature"}})


def zip_pack(pack: Path, dest: Path | BinaryIO) -> None:
    """Write a pack folder as a zip with its files under ``evidence-pack/``."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(pack.iterdir()):
            zf.write(f, f"{ZIP_FOLDER}/{f.name}")


def export_zip(store: Store, *, since: str | None = None, until: str | None = None, system: str | None = None,
               signer: HeadSigner | None = None, control_map: ControlMap | None = None) -> bytes:
    """The pack as a zip (files under ``evidence-pack/``); unzip and verify it as a folder."""
    with tempfile.TemporaryDirectory(prefix="aims-pack-") as tmp:
        pack = Path(tmp) / ZIP_FOLDER
        export_pack(store, pack, since=since, until=until, system=system, signer=signer, control_map=control_map)
        buf = io.BytesIO()
        zip_pack(pack, buf)
        return buf.getvalue()


def unzip_pack(archive: Path, dest: Path, *, max_bytes: int = MAX_UNZIPPED) -> Path:
    """Unpack a zipped pack into ``dest`` and return the pack folder.

    Only a pack's own files are taken, at the top or under one folder; anything else (other names, paths
    leaving the folder, more than ``max_bytes`` once decompressed, counted as it inflates rather than
    trusting the sizes the archive declares) is refused with ``InputError``.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError("not a zip archive of an evidence pack") from exc
    written = 0
    with zf:
        names = [i for i in zf.infolist() if not i.is_dir()]
        prefixes = {i.filename.rpartition("/")[0] for i in names}
        if not names or len(names) > len(PACK_FILES) or len(prefixes) != 1 or "/" in next(iter(prefixes)):
            raise InputError("the archive must hold the pack's files, at its top or in one folder")
        for info in names:
            base = info.filename.rpartition("/")[2]
            if base not in PACK_FILES:
                raise InputError(f"{info.filename!r} is not a file of an evidence pack ({', '.join(PACK_FILES)})")
            try:
                with zf.open(info) as src, (dest / base).open("wb") as out:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        written += len(block)
                        if written > max_bytes:
                            raise InputError(f"the pack unpacks to more than {max_bytes} bytes")
                        out.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise InputError(f"{info.filename}: cannot be unpacked: {exc}") from exc
    return dest


def push_to_grc(store: Store, evidence_cfg: EvidenceConfig, *, since: str | None = None, until: str | None = None,
                system: str | None = None, signer: HeadSigner | None = None,
                control_map: ControlMap | None = None) -> PushResult:
    """Export the period and push it to the configured GRC tool (``agent.evidence.grc``)."""
    from connectors.grc.ciso_assistant import CisoAssistant

    grc = evidence_cfg.grc
    if grc is None:
        raise InputError("no GRC tool configured (agent.evidence.grc)")
    archive = export_zip(store, since=since, until=until, system=system, signer=signer, control_map=control_map)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        manifest = json.loads(zf.read("evidence-pack/manifest.json"))
        with zf.open("evidence-pack/controls.csv") as fh:
            evidenced = [f"{r['control']}" for r in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
                         if r["framework"] == "iso42001" and r["applicable"] == "yes" and int(r["records"] or 0) > 0]
    chain = manifest["chain"]
    period = manifest["period"]
    name = grc.evidence_name + (f" ({system})" if system else "")
    # what the pack holds, not when it was made: exporting the same period again (a retry) gives the same key
    key = hashlib.sha256(canonical({"system": system, "period": period, "records": manifest["files"]["records.jsonl"],
                                    "controls": manifest["files"]["controls.csv"]})).hexdigest()[:32]
    client = CisoAssistant(grc.url, grc.token.get_secret_value(), allowed_hosts=grc.allowed_hosts,
                           timeout_s=grc.timeout_s)
    try:
        return client.push_pack(
            archive=archive, filename=f"aims-evidence-{(period['until'] or manifest['generated_at'])[:10]}.zip",
            name=name, folder=grc.folder, key=key, compliance_assessment=grc.compliance_assessment, controls=evidenced,
            description="Monitoring evidence exported by aims-agent: hash-chained records, per-control summary, "
                        "report. Verify offline with `aims-agent evidence verify`.",
            observation=f"period {period['since'] or 'start'} to {period['until'] or manifest['generated_at']}; "
                        f"records {chain['first_seq']}..{chain['last_seq']}; chain head {chain['head_hash']}")
    finally:
        client.close()


def verify_pack(folder: Path, *, verifier: HeadSigner | None = None) -> int:
    return verify_pack_report(folder, verifier=verifier)[0]


def compare_with_ledger(s: Session, folder: Path) -> str:
    """Whether a verified pack is a piece of this ledger: its head hash must be the hash of the ledger's
    record with the same seq, which (the hashes being chained) fixes every record before it too.

    Raises ``LedgerIntegrityError`` when the pack claims records the ledger does not have or differs from
    it (a pack rewritten with its manifest, or one exported from another ledger); returns what was found.
    """
    chain = read_manifest(folder)["chain"]
    last = chain.get("last_seq")
    if not isinstance(last, int):
        return "empty pack: nothing to compare with the ledger"
    row = s.get(EvidenceRecord, last) if last > SIGNATURE_SEQ else None
    if row is None:
        end = s.execute(select(func.max(EvidenceRecord.seq))).scalar_one_or_none() or 0
        if last > end:
            raise LedgerIntegrityError(f"the pack ends at record {last} but this ledger at {end}: the pack is "
                                       "not from this ledger, or was forged", seq=end + 1)
        return f"not compared: record {last} is no longer in the ledger (purged)"
    if row.hash != chain["head_hash"]:
        raise LedgerIntegrityError(f"the pack's record {last} is not this ledger's record {last}: the pack was "
                                   "rewritten with its manifest, or exported from another ledger", seq=last)
    return f"matches this ledger (records {chain.get('first_seq')}..{last})"


def read_manifest(folder: Path) -> dict[str, Any]:
    """A pack's manifest, checked for the fields verification relies on (``EvidenceError`` otherwise:
    without a usable manifest nothing can be established, which is not the same as tampering)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceError(f"{folder}: cannot read manifest.json: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise EvidenceError(f"{folder}: not an evidence pack (manifest format {fmt!r})")
    chain, files = manifest.get("chain"), manifest.get("files")
    if not isinstance(chain, dict) or not isinstance(files, dict):
        raise EvidenceError(f"{folder}: manifest.json has no `chain` or `files` section")
    first, length = chain.get("first_seq"), chain.get("length")
    if not (first is None or isinstance(first, int)) or not isinstance(length, int) or not all(
            isinstance(chain.get(k), str) for k in ("anchor_prev_hash", "head_hash")):
        raise EvidenceError(f"{folder}: manifest.json's `chain` lacks first_seq, length, anchor_prev_hash or "
                            "head_hash")
    return manifest


def verify_chain_file(records_path: Path, chain: dict[str, Any]) -> int:
    """Verify a records file against a manifest's ``chain``: its anchor, length and head pin both ends."""
    first = chain.get("first_seq")
    length = int(chain["length"])
    last: list[Record | Stub] = []

    def remember(records: Iterator[Record | Stub]) -> Iterator[Record | Stub]:
        for rec in records:  # streamed: a pack may hold millions of records
            last[:] = [rec]
            yield rec

    n = verify_records(remember(read_jsonl(records_path)), expect_start=first if first is not None else 1,
                       expect_prev=chain["anchor_prev_hash"])
    if n < length:
        at = (last[0].seq + 1) if last else first
        raise LedgerIntegrityError(f"the pack ends early: {n} of {length} records (first missing: {at})", seq=at)
    if n > length:
        at = (first or 1) + length
        raise LedgerIntegrityError(f"the pack holds {n} records, its manifest {length} (first extra: {at})", seq=at)
    if last and last[0].hash != chain["head_hash"]:
        raise LedgerIntegrityError(f"record {last[0].seq}'s hash is not the manifest's head: the chain was "
                                   "rewritten", seq=last[0].seq)
    return n


def verify_pack_report(folder: Path, *, verifier: HeadSigner | None = None) -> tuple[int, str]:
    """Verify a pack folder; returns (records verified, what was established about its signature)."""
    manifest = read_manifest(folder)
    files = manifest["files"]
    for name in FORMATS[manifest["format"]]:
        if name not in files:
            raise LedgerIntegrityError(f"the manifest does not list {name}", seq=None)
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise LedgerIntegrityError(f"{name} is missing from the pack", seq=None)
        if name != "records.jsonl" and sha256_file(path) != digest:
            raise LedgerIntegrityError(f"{name} was altered (SHA-256 differs from the manifest)", seq=None)
    n = verify_chain_file(folder / "records.jsonl", manifest["chain"])
    if sha256_file(folder / "records.jsonl") != files.get("records.jsonl"):
        raise LedgerIntegrityError("records.jsonl differs from the manifest's digest although the chain holds",
                                   seq=None)
    return n, _check_pack_signature(manifest, verifier)


def _check_pack_signature(manifest: dict[str, Any], verifier: HeadSigner | None) -> str:
    sig = manifest.get("signature")
    if not isinstance(sig, dict):
        if verifier is not None:
            raise LedgerIntegrityError("the pack is not signed, but a key to check it with was given", seq=None)
        return "not signed"
    algorithm, key_id, value = sig.get("algorithm"), sig.get("key_id"), str(sig.get("value", ""))
    message = _signed_content(manifest)
    if verifier is None:
        if algorithm == "ed25519" and isinstance(sig.get("public_key"), str):
            embedded = Ed25519Signer.from_public_raw(sig["public_key"])
            if embedded.key_id != key_id or not embedded.verify(message, value):
                raise LedgerIntegrityError("the pack's signature does not match its manifest", seq=None)
            return (f"valid for the Ed25519 key carried in the manifest (key id {key_id}); pass that key's "
                    "published public key with --key-file to pin it")
        return f"present ({algorithm}, key {key_id}), not checked: give the key with --key-file"
    if key_id != verifier.key_id or algorithm != verifier.algorithm:
        raise LedgerIntegrityError(f"the pack is signed with {algorithm} key {key_id}, not with the given "
                                   f"{verifier.algorithm} key {verifier.key_id}", seq=None)
    if not verifier.verify(message, value):
        raise LedgerIntegrityError("the pack's signature does not match its manifest: the manifest or a file "
                                   "it lists was altered", seq=None)
    return f"verified ({algorithm}, key {key_id})"


VERIFY_INTACT, VERIFY_TAMPERED, VERIFY_UNUSABLE = 0, 1, 2


def failure(exc: LedgerIntegrityError) -> str:
    """How a failed verification is reported, naming the first bad record when there is one."""
    where = f" (first bad record: {exc.seq})" if exc.seq is not None else ""
    return f"evidence verification FAILED: {exc}{where}"


def verify_path(target: str, *, key_file: str | None = None) -> tuple[int, str]:
    """Verify a pack (folder or zip), a records .jsonl file, a config file's ledger or a database URL's ledger.

    Returns (status, message): ``VERIFY_INTACT`` (0), ``VERIFY_TAMPERED`` (1, the message names the first
    bad record) or ``VERIFY_UNUSABLE`` (2: no such path, not a pack, an unreadable manifest or key, a
    config that does not load), so a script can tell tampered evidence from a wrong argument.
    """
    try:
        verifier = load_verifier(Path(key_file)) if key_file else None
        path = Path(target)
        if path.is_dir():
            n, sig = verify_pack_report(path, verifier=verifier)
            return VERIFY_INTACT, f"{target}: intact evidence pack ({n} records); signature: {sig}"
        if path.suffix == ".zip" and path.is_file():
            with tempfile.TemporaryDirectory(prefix="aims-verify-") as tmp:
                n, sig = verify_pack_report(unzip_pack(path, Path(tmp)), verifier=verifier)
            return VERIFY_INTACT, f"{target}: intact evidence pack ({n} records); signature: {sig}"
        if path.suffix in (".jsonl", ".ndjson") and path.is_file():
            return VERIFY_INTACT, _verify_records_file(path)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            from agent.evidence import signer_from_config
            from config.loader import load_config
            from connectors.registry import sink_config_model, source_config_model

            cfg = load_config(path, sink_config=sink_config_model, source_config=source_config_model)
            url = cfg.agent.state_url.get_secret_value()
            verifier = verifier or signer_from_config(cfg.agent.evidence, path.resolve().parent)
        elif "://" in target:
            url = target
        elif path.exists():
            return VERIFY_UNUSABLE, (f"aims-agent: {target}: not a pack folder or .zip, .jsonl file, config file or "
                                     "database URL")
        else:
            return VERIFY_UNUSABLE, f"aims-agent: {target}: no such file or folder"
        store = Store(url, migrate=False)
        try:
            with store.session() as s:
                result = check_ledger(s, verifier=verifier)
        finally:
            store.close()
        return VERIFY_INTACT, result.describe()
    except LedgerIntegrityError as exc:
        return VERIFY_TAMPERED, f"aims-agent: {failure(exc)}"
    except AimsError as exc:
        # one line: a driver's message may go on with the SQL it ran
        return VERIFY_UNUSABLE, f"aims-agent: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _verify_records_file(path: Path) -> str:
    """A records file on its own proves only that its records chain; beside its pack's manifest, the
    manifest's anchor, length and head pin the first and the last record too."""
    sibling = path.parent / "manifest.json"
    if sibling.is_file():
        manifest = read_manifest(path.parent)
        if manifest["files"].get(path.name) is not None and path.name == "records.jsonl":
            chain = manifest["chain"]
            n = verify_chain_file(path, chain)
            return (f"{path}: intact chain of {n} records, anchored by {sibling.name} (records "
                    f"{chain.get('first_seq')}..{chain.get('last_seq')}, head {str(chain['head_hash'])[:16]}); "
                    f"verify the folder to check the manifest itself and its signature")
    seqs: list[int] = []  # the first and the last seen

    def ends(records: Iterator[Record | Stub]) -> Iterator[Record | Stub]:
        for rec in records:
            seqs[min(len(seqs), 1):] = [rec.seq]
            yield rec

    n = verify_records(ends(read_jsonl(path)), expect_start=None, expect_prev=None)
    span = f" (records {seqs[0]}..{seqs[-1]})" if seqs else ""
    return (f"{path}: intact chain of {n} records{span}, UNANCHORED: nothing pins its first or last record, so "
            "records removed from either end would not show. Verify the pack folder (its manifest anchors the "
            "chain) or the ledger itself")
