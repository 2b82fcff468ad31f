"""`evidence verify` exits 0 for intact evidence, 1 for tampered evidence (naming the first bad record) and 2
for input it cannot use (no such path, not a pack, a bad manifest or key file), so a script can tell them
apart. A bare records file is verified unanchored, and says so; beside its manifest it is anchored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from agent.evidence_pack import export_pack
from tests.conftest import Scenario
from tests.evidence.conftest import cli, run_hours


def _pack(sc: Scenario) -> Path:
    agent = run_hours(sc, [0.0, 2.0, 0.0])
    pack = sc.dir / "pack"
    export_pack(agent.store, pack)
    agent.close()
    return pack


def _drop(path: Path, index: int) -> None:
    lines = path.read_text().splitlines()
    del lines[index]
    path.write_text("\n".join(lines) + "\n")


def test_unusable_input_exits_2_and_tampering_exits_1(scenario: Scenario) -> None:
    pack = _pack(scenario)
    assert cli("evidence", "verify", str(pack)).returncode == 0
    for target in (scenario.dir / "no-such-pack", scenario.dir / "no-such.jsonl", scenario.dir / "no-such.yaml"):
        r = cli("evidence", "verify", str(target))
        assert r.returncode == 2 and "no such file or folder" in r.stderr, (target, r.stderr)
    r = cli("evidence", "verify", str(scenario.dir / "reference.parquet"))
    assert r.returncode == 2 and "not a pack folder" in r.stderr
    r = cli("evidence", "verify", str(pack), "--key-file", str(scenario.dir / "missing.pem"))
    assert r.returncode == 2 and "cannot read the key file" in r.stderr

    bad = scenario.dir / "bad-manifest"
    shutil.copytree(pack, bad)
    for text in ("{not json", json.dumps(["a list"]), json.dumps({"format": "something-else/1"}),
                 json.dumps({"format": "aims-evidence-pack/2", "files": {}})):
        (bad / "manifest.json").write_text(text)
        r = cli("evidence", "verify", str(bad))
        assert r.returncode == 2 and "Traceback" not in r.stderr, (text, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr
    (bad / "manifest.json").unlink()
    assert cli("evidence", "verify", str(bad)).returncode == 2

    _drop(pack / "records.jsonl", 2)
    r = cli("evidence", "verify", str(pack))
    assert r.returncode == 1 and "first bad record: 3" in r.stderr


def test_a_bare_records_file_is_reported_unanchored_and_anchored_beside_its_manifest(scenario: Scenario) -> None:
    pack = _pack(scenario)
    bare = scenario.dir / "records.jsonl"
    shutil.copy(pack / "records.jsonl", bare)
    n = len(bare.read_text().splitlines())
    _drop(bare, 0)  # dropping the first record keeps the rest a valid chain
    r = cli("evidence", "verify", str(bare))
    assert r.returncode == 0 and f"intact chain of {n - 1} records (records 2..{n})" in r.stdout
    assert "UNANCHORED" in r.stdout

    r = cli("evidence", "verify", str(pack / "records.jsonl"))
    assert r.returncode == 0 and "anchored by manifest.json" in r.stdout and "UNANCHORED" not in r.stdout
    _drop(pack / "records.jsonl", n - 1)  # the last record: the chain still holds, the manifest's head does not
    r = cli("evidence", "verify", str(pack / "records.jsonl"))
    assert r.returncode == 1 and "ends early" in r.stderr and f"first bad record: {n}" in r.stderr, r.stderr


def test_a_zipped_pack_verifies_like_its_folder(scenario: Scenario) -> None:
    from agent.evidence_pack import zip_pack

    pack = _pack(scenario)
    archive = scenario.dir / "pack.zip"
    zip_pack(pack, archive)
    r = cli("evidence", "verify", str(archive))
    assert r.returncode == 0 and "intact evidence pack" in r.stdout, r.stderr
    (scenario.dir / "garbage.zip").write_bytes(b"PK\x03\x04 not really")
    r = cli("evidence", "verify", str(scenario.dir / "garbage.zip"))
    assert r.returncode == 2 and "not a zip archive" in r.stderr
    _drop(pack / "records.jsonl", 4)
    zip_pack(pack, archive)
    r = cli("evidence", "verify", str(archive))
    assert r.returncode == 1 and "first bad record: 5" in r.stderr
