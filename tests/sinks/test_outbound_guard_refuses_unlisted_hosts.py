"""Sinks only reach the hosts they are allowed to: not a host missing from ``allowed_hosts``, never a
link-local or cloud-metadata address, loopback only when listed explicitly, and no redirects."""

from __future__ import annotations

import pytest

from config.errors import PermanentSinkError
from connectors.sinks.http import HostGuard, parse_retry_after
from connectors.sinks.webhook import WebhookSink, WebhookSinkConfig
from tests.fakes.http_server import FakeService, Reply, Request
from tests.sinks.conftest import LOOPBACK, NoticeFactory


def test_unlisted_host_is_refused() -> None:
    guard = HostGuard(["hooks.example.com"])
    with pytest.raises(PermanentSinkError, match="not in allowed_hosts"):
        guard.check("evil.example.net")


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "fd00:ec2::254", "100.100.100.200", "0.0.0.0",
                                     "::ffff:169.254.169.254"])
def test_metadata_and_link_local_addresses_are_refused_even_when_listed(address: str) -> None:
    with pytest.raises(PermanentSinkError, match="resolves to"):
        HostGuard([address]).check(address)


def test_loopback_needs_an_explicit_listing() -> None:
    with pytest.raises(PermanentSinkError, match="loopback"):
        HostGuard([], default_urls=["http://127.0.0.1:8080"]).check("127.0.0.1")
    with pytest.raises(PermanentSinkError, match="loopback"):
        HostGuard([], default_urls=["http://localhost:8080"]).check("localhost")
    HostGuard(["127.0.0.1"]).check("127.0.0.1")
    HostGuard(["localhost"]).check("localhost")


def test_the_configured_urls_host_is_the_default_allow_list() -> None:
    guard = HostGuard([], default_urls=["https://redmine.example.com/"])
    assert guard.allowed == {"redmine.example.com"}


class _Redirector(FakeService):
    def handle(self, req: Request) -> Reply:
        return Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})


def test_redirects_are_not_followed(make_notice: NoticeFactory) -> None:
    fake = _Redirector().start()
    try:
        sink = WebhookSink(WebhookSinkConfig.model_validate({"url": fake.url + "/hook", "secret": "s3cret",
                                                             "allowed_hosts": LOOPBACK}))
        with pytest.raises(PermanentSinkError, match="302"):
            sink.deliver(make_notice("open"), known=None)
        assert len(fake.requests) == 1
    finally:
        fake.stop()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
