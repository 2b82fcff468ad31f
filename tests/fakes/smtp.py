"""An in-process SMTP server (aiosmtpd) on loopback that keeps the messages it receives, and can be told
to answer the next messages with a transient (4xx) or permanent (5xx) reply."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from typing import Any, Self

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class _Handler:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.replies: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class FakeSmtp:
    def __init__(self) -> None:
        self.handler = _Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self.handler.messages

    def reply_next(self, reply: str) -> None:
        self.handler.replies.append(reply)

    def start(self) -> Self:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
