"""Fixtures of the sink tests: the real Alertmanager, Redmine and Request Tracker on loopback (started by
``tests/services/start_*.sh`` if not running; a test FAILS when one cannot start), the SaaS fakes
(``fakes`` with ``up``), and a factory of notices with fresh fingerprints.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from connectors.base import Notice
from tests.fakes.http_server import FakeService

SERVICES = Path(__file__).resolve().parent.parent / "services"
SHELLS_DIR = os.environ.get("SHELLS_DIR", "/tmp/aims-services")
AM_PORT = int(os.environ.get("AM_PORT", "19093"))
REDMINE_PORT = int(os.environ.get("REDMINE_PORT", "13000"))
RT_PORT = int(os.environ.get("RT_PORT", "18080"))
REDMINE_KEY = os.environ.get("REDMINE_API_KEY", "0123456789abcdef0123456789abcdef01234567")
LOOPBACK = ["127.0.0.1"]


def service(name: str, action: str = "start") -> str:
    """Run ``tests/services/start_<name>.sh <action>``; fail the test with its output if it fails."""
    env = {**os.environ, "SHELLS_DIR": SHELLS_DIR, "AM_PORT": str(AM_PORT), "REDMINE_PORT": str(REDMINE_PORT),
           "RT_PORT": str(RT_PORT), "REDMINE_API_KEY": REDMINE_KEY}
    proc = subprocess.run(["bash", str(SERVICES / f"start_{name}.sh"), action], env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{name} {action} failed (tests/services/start_{name}.sh):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc.stdout


@dataclass
class RealService:
    name: str
    url: str
    secret: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        service(self.name, "stop")

    def start(self) -> None:
        assert "READY" in service(self.name, "start")


@pytest.fixture(scope="session")
def alertmanager() -> RealService:
    out = service("alertmanager")
    assert "READY" in out, out
    return RealService("alertmanager", f"http://127.0.0.1:{AM_PORT}")


@pytest.fixture(scope="session")
def redmine() -> RealService:
    out = service("redmine")
    cf = re.search(r"incident_key_cf=cf_(\d+)", out)
    cf_id = int(cf.group(1)) if cf else int(Path(SHELLS_DIR, "redmine", "incident_key_cf_id").read_text())
    return RealService("redmine", f"http://127.0.0.1:{REDMINE_PORT}", REDMINE_KEY, {"cf_id": cf_id})


@pytest.fixture(scope="session")
def rt() -> RealService:
    service("rt")
    token = Path(SHELLS_DIR, "rt", "token").read_text().strip()
    return RealService("rt", f"http://127.0.0.1:{RT_PORT}", token)


@pytest.fixture
def redmine_project(redmine: RealService) -> str:
    """A fresh Redmine project per test, so tests never see each other's issues."""
    ident = f"aims-{uuid.uuid4().hex[:10]}"
    resp = httpx.post(f"{redmine.url}/projects.json", headers={"X-Redmine-API-Key": redmine.secret}, json={
        "project": {"name": ident, "identifier": ident, "tracker_ids": [1, 2, 3], "is_public": False}}, timeout=30)
    assert resp.status_code == 201, resp.text
    return ident


def redmine_sink_config(redmine: RealService, project: str, **extra: Any) -> dict[str, Any]:
    return {"type": "redmine", "url": redmine.url, "api_key": redmine.secret, "project": project,
            "incident_key_field_id": redmine.extra["cf_id"], "allowed_hosts": LOOPBACK,
            "priority_ids": {"critical": 5, "high": 4, "medium": 2, "low": 1}, **extra}


def rt_sink_config(rt: RealService, **extra: Any) -> dict[str, Any]:
    return {"type": "rt", "url": rt.url, "token": rt.secret, "allowed_hosts": LOOPBACK, **extra}


def alertmanager_sink_config(am: RealService, **extra: Any) -> dict[str, Any]:
    return {"type": "alertmanager", "url": am.url, "allowed_hosts": LOOPBACK, **extra}


NoticeFactory = Callable[..., Notice]
Fake = TypeVar("Fake", bound=FakeService)


@pytest.fixture
def fakes() -> Iterator[list[FakeService]]:
    """The fakes a test starts with ``up``; all stopped afterwards."""
    started: list[FakeService] = []
    yield started
    for f in started:
        f.stop()


def up(fakes: list[FakeService], fake: Fake) -> Fake:
    fakes.append(fake.start())
    return fake


@pytest.fixture
def make_notice() -> NoticeFactory:
    """Notices of one fresh incident; message ids count up, as the outbox's do."""
    fp = uuid.uuid4().hex
    ids = iter(range(1, 10_000))
    started = datetime.now(UTC) - timedelta(minutes=5)

    def make(action: str = "open", *, severity: str = "high", fingerprint: str | None = None,
             message_id: int | None = None, status: str | None = None, incident_id: int = 1) -> Notice:
        now = datetime.now(UTC)
        labels = {"system": "credit", "kind": "drift", "subject": "dataset", "severity": severity,
                  "fingerprint": fingerprint or fp,
                  "status": status or ("resolved" if action == "resolve" else "open")}
        return Notice(
            message_id=message_id if message_id is not None else next(ids) + incident_id * 1000,
            action=action,  # type: ignore[arg-type]
            fingerprint=fingerprint or fp, incident_id=incident_id, system_id="credit", kind="drift",
            subject="dataset", severity=severity, title="Data drift on Credit scoring: dataset",
            summary=f"{action}: 3 of 8 monitored columns drifted (share 0.38, threshold 0.30).",
            body_markdown="## What happened\n\n3 of 8 columns drifted.\n\n## What to check first\n\n"
                          "1. Open the drift panel.\n2. Check upstream changes.\n\n- Controls: ISO 42001 A.6.2.6\n",
            occurred_at=now, started_at=started, labels=labels,
            content={"owner": {"team": "Credit Risk ML"}, "triage": ["Open the drift panel."],
                     "controls": ["ISO 42001 A.6.2.6"]})

    return make
