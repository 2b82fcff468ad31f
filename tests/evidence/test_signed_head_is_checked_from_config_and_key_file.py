"""Signing configured under agent.evidence.signing: the ledger head and each exported pack are signed;
`evidence verify` checks the ledger with the configured key and a pack with the published key; a ledger
altered in the database is never signed into a pack; the key never appears in evidence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from agent.evidence import signer_from_config
from config.loader import load_config
from tests.conftest import Scenario
from tests.evidence.conftest import cli, run_hours

SECRET = "hmac-secret-for-tests-0123456789abcdef"


def _configure(sc: Scenario, signing: dict[str, str]) -> None:
    cfg = yaml.safe_load(sc.config_path.read_text())
    cfg["agent"]["evidence"] = {"signing": signing}
    sc.config_path.write_text(yaml.safe_dump(cfg))


def _run(sc: Scenario) -> None:
    cfg = load_config(sc.config_path)
    agent = run_hours(sc, [0.0, 2.0, 0.0], signer=signer_from_config(cfg.agent.evidence, sc.dir))
    agent.close()


def test_ed25519_signed_ledger_and_pack_verify_with_the_public_key(scenario: Scenario,
                                                                   ed25519_keys: tuple[Path, Path]) -> None:
    private, public = ed25519_keys
    _configure(scenario, {"algorithm": "ed25519", "key_file": private.name})
    _run(scenario)
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 0, r.stderr
    assert "head signature: verified (ed25519" in r.stdout
    pack = scenario.dir / "pack"
    r = cli("evidence", "export", "--config", str(scenario.config_path), "--out", str(pack))
    assert r.returncode == 0 and "(signed)" in r.stdout, r.stderr
    r = cli("evidence", "verify", str(pack), "--key-file", str(public))
    assert r.returncode == 0 and "signature: verified (ed25519" in r.stdout, r.stderr
    assert "BEGIN" not in (pack / "manifest.json").read_text()  # the public key travels raw, never the private


def test_hmac_key_from_a_secret_file_signs_and_never_leaks(scenario: Scenario) -> None:
    secret = scenario.dir / "ledger.key"
    secret.write_text(SECRET + "\n")
    _configure(scenario, {"algorithm": "hmac-sha256", "key": f"${{file:{secret}}}"})
    _run(scenario)
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 0 and "verified (hmac-sha256" in r.stdout, r.stderr
    pack = scenario.dir / "pack"
    assert cli("evidence", "export", "--config", str(scenario.config_path), "--out", str(pack)).returncode == 0
    r = cli("evidence", "verify", str(pack))
    assert r.returncode == 0 and "not checked: give the key with --key-file" in r.stdout
    r = cli("evidence", "verify", str(pack), "--key-file", str(secret))
    assert r.returncode == 0 and "signature: verified (hmac-sha256" in r.stdout
    for f in pack.iterdir():
        assert SECRET not in f.read_text()
    con = sqlite3.connect(scenario.dir / "state.db")
    assert not any(SECRET in str(row) for row in con.execute("SELECT payload FROM evidence"))
    con.close()


def test_altered_store_is_never_signed_into_a_pack(scenario: Scenario) -> None:
    secret = scenario.dir / "ledger.key"
    secret.write_text(SECRET)
    _configure(scenario, {"algorithm": "hmac-sha256", "key_file": "ledger.key"})
    _run(scenario)
    con = sqlite3.connect(scenario.dir / "state.db")
    payload = con.execute("SELECT payload FROM evidence WHERE seq = 3").fetchone()[0]
    con.execute("UPDATE evidence SET payload = ? WHERE seq = 3", (payload.replace("0", "1", 1),))
    con.commit()
    con.close()
    r = cli("evidence", "export", "--config", str(scenario.config_path), "--out", str(scenario.dir / "pack"))
    assert r.returncode == 2 and "record 3 was altered" in r.stderr
    r = cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 1 and "first bad record: 3" in r.stderr


def test_signing_config_needs_exactly_one_key(scenario: Scenario) -> None:
    _configure(scenario, {"algorithm": "ed25519"})
    r = cli("config", "validate", str(scenario.config_path))
    assert r.returncode == 2 and "agent.evidence.signing" in r.stderr
    assert "exactly one of `key` or `key_file`" in r.stderr
