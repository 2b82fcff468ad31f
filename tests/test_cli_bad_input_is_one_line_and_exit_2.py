"""Every command: bad input is one line on stderr and exit 2 (1 means "breach" to cron and CI), never a
traceback; an unexpected error is one line too, with the traceback only under --debug."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent import cli
from tests.conftest import T0, Scenario


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120)


def _one_line_exit_2(r: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_check_with_a_time_that_is_not_a_time(scenario: Scenario) -> None:
    r = _cli("check", "--config", str(scenario.config_path), "--now", "garbage")
    _one_line_exit_2(r, "--now", "garbage", "ISO 8601")


def test_check_with_a_time_without_zone_is_utc(scenario: Scenario) -> None:
    scenario.hour(T0)
    naive = (T0 + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    r = _cli("check", "--config", str(scenario.config_path), "--now", naive, "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    assert json.loads(r.stdout)["windows"][0]["start"] == T0.isoformat()


def test_modelcard_to_a_folder_that_does_not_exist(scenario: Scenario, tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "x.md"
    r = _cli("modelcard", "--config", str(scenario.config_path), "scoring", "-o", str(target))
    _one_line_exit_2(r, str(target))
    assert not target.parent.exists()


def test_evidence_commands_with_bad_dates_and_unwritable_outputs(scenario: Scenario, tmp_path: Path) -> None:
    config = str(scenario.config_path)
    _one_line_exit_2(_cli("evidence", "export", "--config", config, "--since", "yesterday", "--out",
                          str(tmp_path / "pack")), "--since")
    _one_line_exit_2(_cli("evidence", "export", "--config", config, "--until", "2026-13-45", "--out",
                          str(tmp_path / "pack")), "--until")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _one_line_exit_2(_cli("evidence", "export", "--config", config, "--out", str(blocker / "pack")))
    _one_line_exit_2(_cli("evidence", "purge", "--config", config, "--now", "soon"), "--now")
    _one_line_exit_2(_cli("evidence", "push", "--config", config, "--since", "last week"), "--since")


def test_evidence_verify_of_something_that_is_not_there(tmp_path: Path) -> None:
    _one_line_exit_2(_cli("evidence", "verify", str(tmp_path / "missing-pack")), "no such file")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    _one_line_exit_2(_cli("evidence", "verify", str(other)), "not a pack")
    _one_line_exit_2(_cli("evidence", "verify", str(tmp_path), "--key-file", str(tmp_path / "nokey.pem")),
                     "key file")


def test_missing_config_and_bad_numbers(scenario: Scenario, tmp_path: Path) -> None:
    _one_line_exit_2(_cli("inventory", "--config", str(tmp_path / "missing.yaml")), "missing.yaml")
    _one_line_exit_2(_cli("risk", "export", "--config", str(scenario.config_path), "--days", "0"), "--days")
    _one_line_exit_2(_cli("modelcard", "--config", str(scenario.config_path), "scoring", "--days", "many"),
                     "--days")
    _one_line_exit_2(_cli("run", "--config", str(scenario.config_path), "--port", "70000"), "--port")
    _one_line_exit_2(_cli("demo", "--serve", "0"), "--serve")
    _one_line_exit_2(_cli("check"), "--config")
    _one_line_exit_2(_cli("astrology"), "astrology")


def test_run_on_a_port_already_in_use_is_not_a_breach(scenario: Scenario) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli("run", "--config", str(scenario.config_path), "--port", str(port))
    _one_line_exit_2(r, f"127.0.0.1:{port}")


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_debug(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scenario: Scenario) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("something nobody planned for\nsecond line")

    monkeypatch.setattr(cli, "cmd_inventory", broken)
    assert cli.main(["inventory", "--config", str(scenario.config_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: something nobody planned for second line" in err
    assert "--debug" in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "inventory", "--config", str(scenario.config_path)])
