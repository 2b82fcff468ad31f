"""The contract every registered sink plugin (entry point ``aims_agent.sinks``) must honour.

For each plugin: its config model forbids unknown keys and holds credentials as ``SecretStr``; it is
created from a valid config through the registry; ``describe`` shows no secret; and open, update and
resolve delivered twice (and, where the tool can be searched or deduplicates, once more from a new
instance that lost its local map) leave exactly one ticket. A plugin without a rig here fails, so a
new sink cannot ship without passing the contract.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from connectors.base import Sink, TicketRef
from connectors.registry import SINK_GROUP, load_plugin, plugin_names
from tests.fakes.github import FakeGitHub
from tests.fakes.http_server import FakeService
from tests.fakes.jira import FakeJira
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.servicenow import FakeServiceNow
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSmtp
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.sinks.conftest import (
    LOOPBACK,
    NoticeFactory,
    RealService,
    alertmanager_sink_config,
    redmine_sink_config,
    rt_sink_config,
)

SECRET_NAMES = ("password", "token", "secret", "api_key", "routing_key", "webhook_url")
PD_KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class Rig:
    config: dict[str, Any]
    tickets: Callable[[str], int]  # tickets (or alerts, or messages) that exist for a fingerprint
    secret: str
    searchable: bool = True  # the tool can find or deduplicate the incident without our local map
    stop: Callable[[], None] = lambda: None
    settle: Callable[[], None] = lambda: None  # wait out the tool's eventual consistency, if it has one


def _rig(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    if name == "local_folder":
        folder = tmp_path / "tickets"
        return Rig({"type": "local_folder", "path": str(folder)},
                   lambda fp: len(list(folder.glob(f"*-{fp[:8]}.json"))), secret="")
    if name == "alertmanager":
        am: RealService = request.getfixturevalue("alertmanager")

        def alerts(fp: str) -> int:
            got = httpx.get(f"{am.url}/api/v2/alerts", params={"filter": f'aims_fingerprint="{fp}"'}).json()
            return len(got)
        return Rig(alertmanager_sink_config(am), alerts, secret="")
    if name == "redmine":
        rm: RealService = request.getfixturevalue("redmine")
        project = request.getfixturevalue("redmine_project")

        def issues(fp: str) -> int:
            return int(httpx.get(f"{rm.url}/issues.json", headers={"X-Redmine-API-Key": rm.secret}, params={
                "project_id": project, "status_id": "*", f"cf_{rm.extra['cf_id']}": fp}).json()["total_count"])
        return Rig(redmine_sink_config(rm, project), issues, secret=rm.secret)
    if name == "rt":
        rts: RealService = request.getfixturevalue("rt")

        def tickets(fp: str) -> int:
            got = httpx.get(f"{rts.url}/REST/2.0/tickets", headers={"Authorization": f"token {rts.secret}"},
                            params={"query": f"'CF.{{Incident key}}'='{fp}'"}).json()
            return int(got["total"])
        return Rig(rt_sink_config(rts), tickets, secret=rts.secret)
    fake: FakeService
    if name == "jira":
        jira = FakeJira(email="bot@example.com", token="jira-token-1").start()
        return Rig({"type": "jira", "url": jira.url, "email": "bot@example.com", "api_token": "jira-token-1",
                    "project_key": "MM", "allowed_hosts": LOOPBACK},
                   lambda fp: sum(f"aiinc-{fp}" in i["fields"]["labels"] for i in jira.issues.values()),
                   secret="jira-token-1", stop=jira.stop, settle=jira.catch_up)
    if name == "servicenow":
        sn = FakeServiceNow(username="aims", password="sn-pass-1").start()
        return Rig({"type": "servicenow", "url": sn.url, "username": "aims", "password": "sn-pass-1",
                    "allowed_hosts": LOOPBACK},
                   lambda fp: sum(r["correlation_id"] == fp for r in sn.records.values()), secret="sn-pass-1",
                   stop=sn.stop)
    if name == "pagerduty":
        pd = FakePagerDuty(routing_key=PD_KEY).start()
        return Rig({"type": "pagerduty", "url": pd.url, "routing_key": PD_KEY, "allowed_hosts": LOOPBACK},
                   lambda fp: int(pd.alerts.get(fp, {}).get("incidents", 0)), secret=PD_KEY, stop=pd.stop)
    if name == "opsgenie":
        og = FakeOpsgenie(api_key="og-key-1").start()
        return Rig({"type": "opsgenie", "url": og.url, "api_key": "og-key-1", "allowed_hosts": LOOPBACK},
                   lambda fp: sum(a["alias"] == fp for a in og.alerts), secret="og-key-1", stop=og.stop)
    if name == "github":
        gh = FakeGitHub(token="ghp-token-1", repo="acme/models").start()
        return Rig({"type": "github", "url": gh.url, "token": "ghp-token-1", "repository": "acme/models",
                    "allowed_hosts": LOOPBACK},
                   lambda fp: sum({"name": f"aiinc-{fp}"} in i["labels"] for i in gh.issues.values()),
                   secret="ghp-token-1", stop=gh.stop)
    if name == "slack":
        fake = slack = FakeSlack().start()
        return Rig({"type": "slack", "webhook_url": slack.webhook_url, "allowed_hosts": LOOPBACK},
                   lambda fp: sum(fp in str(m) for m in slack.messages), secret=slack.path, searchable=False,
                   stop=fake.stop)
    if name == "webhook":
        hook = FakeWebhookReceiver(secret="hmac-secret-1").start()
        return Rig({"type": "webhook", "url": hook.url + "/aims", "secret": "hmac-secret-1",
                    "allowed_hosts": LOOPBACK},
                   lambda fp: sum(1 for r in hook.requests if r.headers.get("x-aims-fingerprint") == fp),
                   secret="hmac-secret-1", searchable=False, stop=hook.stop)
    if name == "email":
        smtp = FakeSmtp().start()
        return Rig({"type": "email", "host": "127.0.0.1", "port": smtp.port, "security": "none",
                    "from": "aims@example.com", "to": ["oncall@example.com"], "allowed_hosts": LOOPBACK},
                   lambda fp: sum(m["X-Aims-Fingerprint"] == fp for m in smtp.messages), secret="",
                   searchable=False, stop=smtp.stop)
    raise AssertionError(f"sink plugin {name!r} has no contract rig: add one to this test")


@pytest.fixture(params=plugin_names(SINK_GROUP))
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Rig]]:
    name = str(request.param)
    r = _rig(name, request, tmp_path)
    try:
        yield name, r
    finally:
        r.stop()


def _build(name: str, config: dict[str, Any], tmp_path: Path) -> Sink:
    cls = load_plugin(SINK_GROUP, name)
    assert cls is not None
    typed = cls.config_model.model_validate(config)  # type: ignore[attr-defined]
    sink = cls(typed, base_dir=tmp_path, name=name)
    assert isinstance(sink, Sink)
    return sink


def test_the_built_in_sinks_are_all_registered() -> None:
    assert set(plugin_names(SINK_GROUP)) >= {
        "local_folder", "alertmanager", "redmine", "rt", "jira", "servicenow", "pagerduty", "opsgenie", "github",
        "slack", "email", "webhook"}


def test_config_model_forbids_unknown_keys_and_hides_secrets(rig: tuple[str, Rig]) -> None:
    name, r = rig
    cls = load_plugin(SINK_GROUP, name)
    model: type[pydantic.BaseModel] = cls.config_model  # type: ignore[union-attr]
    model.model_validate(r.config)
    with pytest.raises(pydantic.ValidationError, match="unexpected_key"):
        model.model_validate({**r.config, "unexpected_key": 1})
    hints = typing.get_type_hints(model)
    for field_name in model.model_fields:
        if any(s in field_name for s in SECRET_NAMES):
            assert "SecretStr" in str(hints[field_name]), f"{name}.{field_name} must be a SecretStr"
    if r.secret:
        assert r.secret not in repr(model.model_validate(r.config))


def test_open_update_resolve_twice_leaves_one_ticket(rig: tuple[str, Rig], make_notice: NoticeFactory,
                                                     tmp_path: Path) -> None:
    name, r = rig
    sink = _build(name, r.config, tmp_path)
    assert isinstance(sink.describe(), str)
    if r.secret:
        assert r.secret not in sink.describe()
    opened = make_notice("open")
    fp = opened.fingerprint
    ref = sink.deliver(opened, known=None)
    assert isinstance(ref, TicketRef)
    assert sink.deliver(opened, known=None) == ref, "the same message twice is one delivery"
    if r.searchable:
        # a new process with no local map (crash between delivering and recording): still one ticket
        r.settle()
        again = _build(name, r.config, tmp_path).deliver(opened, known=None)
        assert again.remote_id == ref.remote_id
    assert r.tickets(fp) == 1

    update = make_notice("update", severity="critical")
    ref2 = sink.deliver(update, known=ref)
    assert sink.deliver(update, known=ref2) == ref2
    assert r.tickets(fp) == (2 if not r.searchable else 1), "an update changes the ticket, it does not add one"

    resolve = make_notice("resolve", severity="critical")
    ref3 = sink.deliver(resolve, known=ref2)
    assert sink.deliver(resolve, known=ref3) == ref3
    if name == "alertmanager":
        assert r.tickets(fp) == 0, "a resolved alert leaves Alertmanager's active list"
    else:
        assert r.tickets(fp) == (3 if not r.searchable else 1)


def test_sink_config_problems_are_all_reported_with_their_path(tmp_path: Path) -> None:
    from config.errors import ConfigError
    from config.loader import parse_config
    from connectors.registry import sink_config_model
    from tests.conftest import scenario_config

    cfg = scenario_config(tmp_path, tmp_path / "p.db", f"sqlite:///{tmp_path / 's.db'}")
    cfg["sinks"]["rm"] = {"type": "redmine", "url": "ftp://x", "apikey": "k", "project": "p",
                          "incident_key_field_id": 1}
    cfg["sinks"]["pd"] = {"type": "pagerduty", "routing_key": "k" * 32, "severities": {"high": "urgent"}}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, sink_config=sink_config_model)
    found = {str(p) for p in err.value.problems}
    assert {"sinks.rm.url: String should match pattern '^https?://'", "sinks.rm.api_key: required key is missing",
            "sinks.rm.apikey: unknown key"} <= found
    assert any(p.startswith("sinks.pd.severities.high") for p in found)
