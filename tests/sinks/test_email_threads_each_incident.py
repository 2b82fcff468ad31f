"""The e-mail sink against a real SMTP server (aiosmtpd, in process): one message per change, threaded
per incident, stable Message-IDs; 4xx replies are retried, 5xx replies are permanent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.errors import PermanentSinkError, RetryableSinkError
from connectors.sinks.email import EmailSink, EmailSinkConfig
from tests.fakes.smtp import FakeSmtp
from tests.sinks.conftest import LOOPBACK, NoticeFactory


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    server = FakeSmtp().start()
    yield server
    server.stop()


def _sink(smtp: FakeSmtp) -> EmailSink:
    return EmailSink(EmailSinkConfig.model_validate({
        "host": "127.0.0.1", "port": smtp.port, "security": "none", "from": "aims@example.com",
        "to": ["ml-oncall@example.com", "risk@example.com"], "allowed_hosts": LOOPBACK}))


def test_messages_of_one_incident_form_one_thread(smtp: FakeSmtp, make_notice: NoticeFactory) -> None:
    sink = _sink(smtp)
    opened = make_notice("open")
    sink.deliver(opened, known=None)
    sink.deliver(opened, known=None)
    sink.deliver(make_notice("update"), known=None)
    sink.deliver(make_notice("resolve"), known=None)
    first, update, resolve = smtp.messages
    assert first["Subject"] == f"[AIMS OPEN] [high] {opened.title}"
    assert "What to check first" in first.get_payload()
    thread = f"<aims.{opened.fingerprint}.1@aims-agent.local>"
    assert update["In-Reply-To"] == thread and resolve["References"] == thread
    assert len({m["Message-ID"] for m in smtp.messages}) == 3
    assert smtp.handler.envelopes[0] == ("aims@example.com", ["ml-oncall@example.com", "risk@example.com"])


def test_transient_reply_is_retried_and_permanent_reply_is_not(smtp: FakeSmtp, make_notice: NoticeFactory) -> None:
    sink = _sink(smtp)
    smtp.reply_next("451 4.3.0 Try again later")
    with pytest.raises(RetryableSinkError, match="451"):
        sink.deliver(make_notice("open"), known=None)
    smtp.reply_next("554 5.7.1 Rejected by policy")
    with pytest.raises(PermanentSinkError, match="554"):
        sink.deliver(make_notice("update"), known=None)


def test_unreachable_server_is_retryable(make_notice: NoticeFactory) -> None:
    from tests.conftest import free_port

    sink = EmailSink(EmailSinkConfig.model_validate({
        "host": "127.0.0.1", "port": free_port(), "security": "none", "from": "aims@example.com",
        "to": ["x@example.com"], "allowed_hosts": LOOPBACK, "timeout_s": 2}))
    with pytest.raises(RetryableSinkError):
        sink.deliver(make_notice("open"), known=None)
