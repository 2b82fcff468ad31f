"""While an incident stays open, ``incidents.update_every`` adds a comment with the latest measurement at
most that often (checked at each check run); without it, an unchanged incident stays quiet."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, route


def _timeline(sc: Scenario, kind: str) -> list[dict[str, str]]:
    for p in (sc.dir / "tickets").glob("*.json"):
        ticket = json.loads(p.read_text())
        if ticket["kind"] == kind:
            return list(ticket["timeline"])
    raise AssertionError(f"no {kind} ticket")


@pytest.mark.parametrize(("every", "updates"), [("2h", 2), (None, 0)])
def test_open_incident_is_commented_at_the_configured_cadence(scenario: Scenario, every: str | None,
                                                              updates: int) -> None:
    sc = scenario
    routing = {"update_every": every} if every else {}
    route(sc, {}, **routing)
    a = agent(sc)
    system = a.cfg.systems[0].id
    for h in range(6):  # drifted for six hours, judged hour by hour
        sc.hour(T0 + timedelta(hours=h), shift=2.0)
        a.run_system(system, T0 + timedelta(hours=h + 1))
        a.deliver(T0 + timedelta(hours=h + 1))
    timeline = _timeline(sc, "prediction_drift")
    reminders = [e for e in timeline if e["action"] == "update"]
    assert timeline[0]["action"] == "open"
    assert len(reminders) == updates, [e["at"] for e in timeline]
    ages = [e["summary"].split(":")[0] for e in reminders]
    assert ages == ["Still open after 2h 0m", "Still open after 4h 0m"][:updates]
    assert all("threshold" in e["summary"] for e in reminders), "each reminder carries the latest measurement"
    a.close()
