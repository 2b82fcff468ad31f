"""An agent killed with SIGKILL in the middle of delivering to the real Redmine loses nothing and duplicates
nothing.

The agent runs as an OS process (``aims-agent check``) whose Redmine sink talks to Redmine through a gate
on loopback. The gate forwards every request and, when armed, stops at one chosen request: it either
withholds the request (Redmine never sees it) or forwards it, waits for Redmine's answer (Redmine has
committed the change) and withholds the answer. Either way the agent is still waiting on that call when
the test kills it, so each kill lands exactly at its point, never a little before or after; where
Redmine answered, the outbox has not committed the delivery, so the next process delivers it again.
Eight kills, across every step of the ticket lifecycle: after Redmine created an issue (for a first
incident; for a recurrence whose earlier issue is closed; for an incident whose resolve is queued behind
its open); before a comment reaches Redmine; after a comment went in but before the priority follows;
after the priority, the last call of an update; after a resolve's comment but before the close; after
the close.

When a last run has delivered everything, Redmine's own REST API shows: one issue per incident (Redmine
was asked to create exactly as many issues as there are incidents, and each fingerprint has one issue
per episode, ``on_recurrence: new``), none missing; every update and resolve comment exactly once (its
message marker counted across the issue's journals); each issue closed when its incident resolved and
open while it is open, at the priority of its severity; nothing left in the outbox; and the evidence
ledger verifies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import route
from tests.sinks.conftest import RealService, redmine_sink_config

SEVERITY_PRIORITY = {"critical": 5, "high": 4, "medium": 2, "low": 1}
# drift on, off, on again: incidents open, get hourly reminders, resolve, and recur
SHIFTS = [0, 0, 2, 2, 2, 2, 0, 0, 2, 2, 2, 0, 0]
MARKER = re.compile(r"aims message (\d+): (\w+) at ")

Match = Callable[[str, str, dict[str, Any]], bool]


def _issue(body: dict[str, Any]) -> dict[str, Any]:
    issue = body.get("issue")
    return issue if isinstance(issue, dict) else {}


def creates(method: str, path: str, body: dict[str, Any]) -> bool:
    return method == "POST" and path.startswith("/issues.json")


def comments(method: str, path: str, body: dict[str, Any]) -> bool:
    return method == "PUT" and bool(_issue(body).get("notes"))


def resolve_comments(method: str, path: str, body: dict[str, Any]) -> bool:
    return comments(method, path, body) and "Recovered" in str(_issue(body)["notes"])


def priorities(method: str, path: str, body: dict[str, Any]) -> bool:
    return method == "PUT" and "priority_id" in _issue(body)


def closes(method: str, path: str, body: dict[str, Any]) -> bool:
    return method == "PUT" and "status_id" in _issue(body)


@dataclass
class Trap:
    point: str
    match: Match
    nth: int
    answered: bool  # forward the request and withhold Redmine's answer; else withhold the request itself
    seen: int = 0
    sprung: threading.Event = field(default_factory=threading.Event)


class Gate:
    """An HTTP gate in front of Redmine that can stop the agent at one chosen request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60, trust_env=False)
        self.lock = threading.Lock()
        self.trap: Trap | None = None
        self.release = threading.Event()
        self.log: list[tuple[str, str, int | str]] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw) if raw else {}
                path = self.path.split("?", 1)[0]
                with gate.lock:
                    trap = gate.trap
                    if trap is not None and trap.match(self.command, self.path, body):
                        trap.seen += 1
                        if trap.seen == trap.nth:
                            gate.trap = None
                        else:
                            trap = None
                    else:
                        trap = None
                if trap is not None and not trap.answered:
                    gate.log.append((self.command, path, f"withheld at {trap.point}"))
                    self._hold(trap)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "accept", "x-redmine-api-key")}
                resp = gate.upstream.request(self.command, self.path, content=raw, headers=headers)
                gate.log.append((self.command, path, resp.status_code))
                if trap is not None:
                    self._hold(trap)
                    return
                self.send_response(resp.status_code)
                if resp.headers.get("content-type"):
                    self.send_header("Content-Type", resp.headers["content-type"])
                if resp.status_code not in (204, 304):
                    self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if resp.status_code not in (204, 304):
                    self.wfile.write(resp.content)

            def _hold(self, trap: Trap) -> None:
                trap.sprung.set()
                gate.release.wait(120)  # the agent is killed meanwhile: it never gets an answer
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _relay

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arm(self, point: str, match: Match, *, nth: int = 1, answered: bool = True) -> Trap:
        self.release.clear()
        trap = Trap(point, match, nth, answered)
        with self.lock:
            self.trap = trap
        return trap

    def disarm(self) -> None:
        with self.lock:
            self.trap = None
        self.release.set()

    def close(self) -> None:
        self.disarm()
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()


def _check(sc: Scenario, hours: int, stderr: Path) -> subprocess.Popen[bytes]:
    now = (T0 + timedelta(hours=hours)).isoformat()
    with stderr.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "agent.cli", "check", "--config", str(sc.config_path),
                                 "--now", now], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "PYTHONHASHSEED": "0"})


def _kill_at(gate: Gate, sc: Scenario, hours: int, trap: Trap, stderr: Path) -> None:
    """Run a check until the agent waits on the trapped request, then SIGKILL it there."""
    proc = _check(sc, hours, stderr)
    try:
        deadline = time.monotonic() + 60
        while not trap.sprung.wait(0.05):
            assert proc.poll() is None, (f"the agent finished (exit {proc.returncode}) without reaching "
                                         f"{trap.point!r}:\n{stderr.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"{trap.point!r} never reached"
        assert proc.poll() is None, "killed while waiting on Redmine, not after"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        gate.disarm()
    assert proc.returncode == -signal.SIGKILL


def _redmine(rm: RealService, path: str, **params: Any) -> dict[str, Any]:
    resp = httpx.get(f"{rm.url}{path}", headers={"X-Redmine-API-Key": rm.secret}, params=params, timeout=30)
    resp.raise_for_status()
    return dict(resp.json())


@pytest.mark.integration
@pytest.mark.slow
def test_agent_killed_mid_delivery_to_redmine_loses_and_duplicates_nothing(
        scenario: Scenario, redmine: RealService, redmine_project: str, tmp_path: Path) -> None:
    sc = scenario
    for h, shift in enumerate(SHIFTS):
        sc.hour(T0 + timedelta(hours=h), shift=float(shift))
    gate = Gate(redmine.url)
    stderr = tmp_path / "agent.stderr"
    started = time.monotonic()
    try:
        route(sc, {"redmine": redmine_sink_config(redmine, redmine_project, url=gate.url, timeout_s=60)},
              update_every="1h")
        # (check --now hours, kill point, what the gate matches, its n-th match, answered by Redmine?)
        plan: list[tuple[int, str, Match, int, bool]] = [
            (3, "first issue created", creates, 1, True),
            (4, "comment withheld before Redmine", comments, 1, False),
            (5, "comment in, priority not yet", comments, 1, True),
            (5, "priority in, the update's last call", priorities, 1, True),
            (7, "resolve comment in, close not yet", resolve_comments, 1, True),
            (7, "close in", closes, 1, True),
            (9, "recurrence created, earlier issue closed", creates, 1, True),
            (13, "issue created, its resolve queued behind", creates, 2, True),
        ]
        for hours, point, match, nth, answered in plan:
            _kill_at(gate, sc, hours, gate.arm(point, match, nth=nth, answered=answered), stderr)
        proc = _check(sc, len(SHIFTS), stderr)
        assert proc.wait(timeout=120) in (0, 1), stderr.read_text()[-3000:]
    finally:
        gate.close()
    elapsed = time.monotonic() - started

    engine = create_engine(f"sqlite:///{sc.dir / 'state.db'}")
    with engine.connect() as c:
        incidents = c.execute(text("SELECT id, fingerprint, kind, status, severity FROM incidents ORDER BY id")).all()
        messages = c.execute(text("SELECT id, incident_id, action, status FROM outbox WHERE sink = 'redmine' "
                                  "ORDER BY id")).all()
        delivered = [json.loads(p) if isinstance(p, str) else p for (p,) in c.execute(text(
            "SELECT payload FROM evidence WHERE kind = 'notification_delivered' ORDER BY seq")).all()]
    engine.dispose()
    assert {m.status for m in messages} == {"delivered"}, "every message to Redmine delivered, none given up"
    episodes = Counter(i.fingerprint for i in incidents)
    assert len(incidents) >= 5 and max(episodes.values()) >= 2, "incidents opened, resolved and recurred"

    # what Redmine holds, read through its own REST API
    cf = redmine.extra["cf_id"]
    issues = _redmine(redmine, "/issues.json", project_id=redmine_project, status_id="*", limit=100)["issues"]
    by_fp: dict[str, list[dict[str, Any]]] = {}
    for issue in issues:
        key = next(str(f.get("value")) for f in issue["custom_fields"] if f["id"] == cf)
        by_fp.setdefault(key, []).append(issue)
    created = [entry for entry in gate.log if entry[:2] == ("POST", "/issues.json") and entry[2] == 201]
    duplicates = len(issues) - len(incidents)
    lost = sum(max(0, n - len(by_fp.get(fp, []))) for fp, n in episodes.items())
    print(f"\n{len(plan)} SIGKILLs mid-delivery; {len(created)} issues created for {len(incidents)} incidents "
          f"({len(episodes)} fingerprints), {duplicates} duplicate(s), {lost} lost; {elapsed:.1f} s")
    assert len(created) == len(incidents), "Redmine was asked to create one issue per incident, never twice"
    assert {fp: len(v) for fp, v in by_fp.items()} == dict(episodes), \
        "one issue per episode of each fingerprint: none duplicated, none missing"

    # each incident has its own issue: the one its deliveries went to
    issue_of: dict[int, str] = {}
    for d in delivered:
        if d["sink"] == "redmine" and d["remote_id"]:
            assert issue_of.setdefault(int(d["incident_id"]), str(d["remote_id"])) == str(d["remote_id"]), \
                f"incident {d['incident_id']} delivered to more than one issue"
    assert sorted(issue_of) == [i.id for i in incidents], "every incident reached Redmine"
    assert sorted(issue_of.values()) == sorted(str(i["id"]) for i in issues), "one incident per issue"

    for inc in incidents:
        issue = _redmine(redmine, f"/issues/{issue_of[inc.id]}.json", include="journals")["issue"]
        fp_value = next(str(f.get("value")) for f in issue["custom_fields"] if f["id"] == cf)
        assert fp_value == inc.fingerprint
        markers = [(int(m.group(1)), m.group(2)) for j in issue.get("journals", [])
                   for m in MARKER.finditer(str(j.get("notes") or ""))]
        expected = [(m.id, m.action) for m in messages if m.incident_id == inc.id and m.action != "open"]
        assert sorted(markers) == expected, \
            f"incident {inc.id} ({inc.kind}): each update and resolve comment exactly once"
        status = issue["status"]
        closed = status.get("is_closed", status["id"] == 5)
        assert closed == (inc.status == "resolved"), f"incident {inc.id} is {inc.status}, issue {status['name']}"
        assert issue["priority"]["id"] == SEVERITY_PRIORITY[inc.severity]

    verify = subprocess.run([sys.executable, "-m", "agent.cli", "evidence", "verify", str(sc.config_path)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
