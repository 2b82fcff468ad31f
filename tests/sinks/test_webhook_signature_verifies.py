"""The generic webhook signs ``timestamp.body`` with HMAC-SHA256; a receiver following docs/incidents.md
accepts it, and rejects a tampered body, a wrong secret or a stale timestamp."""

from __future__ import annotations

import time

from connectors.sinks.webhook import WebhookSink, WebhookSinkConfig, sign, verify
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.sinks.conftest import LOOPBACK, NoticeFactory


def test_receiver_verifies_and_deduplicates_deliveries(make_notice: NoticeFactory) -> None:
    hook = FakeWebhookReceiver(secret="shared-secret").start()
    try:
        sink = WebhookSink(WebhookSinkConfig.model_validate({
            "url": hook.url + "/hooks/aims", "secret": "shared-secret", "allowed_hosts": LOOPBACK,
            "headers": {"X-Team": "ml"}}))
        notice = make_notice("open")
        sink.deliver(notice, known=None)
        WebhookSink(sink.config).deliver(notice, known=None)  # another process redelivers the same message
        assert hook.rejected == 0
        assert list(hook.accepted) == [str(notice.message_id)], "the receiver keeps one copy per message id"
        body = hook.accepted[str(notice.message_id)]
        assert (body["action"], body["fingerprint"], body["title"]) == ("open", notice.fingerprint, notice.title)
        assert hook.requests[0].headers["x-team"] == "ml"
        assert "shared-secret" not in str(hook.requests[0].headers)
    finally:
        hook.stop()


def test_verify_rejects_tampering_wrong_secret_and_replays() -> None:
    body = b'{"action":"open"}'
    ts = str(int(time.time()))
    sig = sign(b"k3y", ts, body)
    assert verify(b"k3y", timestamp=ts, signature=sig, body=body)
    assert not verify(b"k3y", timestamp=ts, signature=sig, body=body + b" ")
    assert not verify(b"other", timestamp=ts, signature=sig, body=body)
    old = str(int(time.time()) - 3600)
    assert not verify(b"k3y", timestamp=old, signature=sign(b"k3y", old, body), body=body)
    assert not verify(b"k3y", timestamp="not-a-time", signature=sig, body=body)
