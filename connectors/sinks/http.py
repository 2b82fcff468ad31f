"""Shared HTTP handling of the remote incident sinks: one guarded client and the ticket-sink skeleton.

``HttpClient`` sends every request through an outbound allow-list (``allowed_hosts``; link-local and
cloud-metadata addresses are always refused, loopback only when named explicitly), never follows
redirects, and maps failures onto the sink errors of ``config.errors``:

* connection errors, timeouts, 408, 429 and 5xx -> ``RetryableSinkError`` (``retry_after`` from the
  ``Retry-After`` header, in seconds or as an HTTP date, or from GitHub's rate-limit reset);
* every other 4xx and any 3xx -> ``PermanentSinkError`` carrying the response's reason, with every
  configured secret redacted from the message;
* a 2xx whose body is not the JSON the API promises (a proxy's or a single-sign-on page) ->
  ``PermanentSinkError`` from ``HttpClient.json``, never a decoding error out of the sink.

``TicketSink`` holds the lifecycle common to the ticketing tools (Redmine, RT, Jira, ServiceNow,
GitHub): look up the open ticket by fingerprint before creating one, reopen or open a new ticket on
recurrence as configured, comment on updates, close on resolve. Every step is safe to repeat, because
a message is retried after a partial failure (the comment went in, the priority change got a 429) and
redelivered after a crash: a comment is posted only if the ticket does not carry the message's marker
yet, and a state change only if the ticket is not in that state already. A ticket closed or deleted
by hand while its incident is still open is put back: reopened or replaced by a new one.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from config.errors import PermanentSinkError, RetryableSinkError
from connectors.base import Notice, Reinstated, TicketRef

# cloud metadata endpoints that are not link-local (AWS IPv6, Alibaba)
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
SEVERITIES = ("critical", "high", "medium", "low")


class SinkSettings(BaseModel):
    """Settings every remote sink shares; a plugin's config model extends it."""

    model_config = ConfigDict(extra="forbid")

    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="hosts this sink may contact; default: the host of its configured URL. Loopback "
        "(127.0.0.1, localhost, ::1) must be listed explicitly.")
    timeout_s: float = Field(default=10.0, gt=0, le=300)


class TicketSinkSettings(SinkSettings):
    on_recurrence: Literal["new", "reopen"] = Field(
        default="new", description="when a resolved incident recurs: open a new ticket, or reopen the last one")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds: float | None = float(value)
    except ValueError:
        seconds = None  # not delta-seconds: an HTTP date, then
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _forbidden_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, *, loopback_ok: bool) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return _forbidden_address(addr.ipv4_mapped, loopback_ok=loopback_ok)
    if addr.is_link_local or addr in METADATA_ADDRESSES:
        return "a link-local or cloud-metadata address"
    if addr.is_unspecified or addr.is_multicast or addr.is_reserved:
        return "an unspecified, multicast or reserved address"
    if addr.is_loopback and not loopback_ok:
        return "a loopback address not listed in allowed_hosts"
    return None


class HostGuard:
    """The outbound allow-list: host names must be listed, and what they resolve to must be routable."""

    def __init__(self, allowed_hosts: Iterable[str], *, default_urls: Iterable[str] = ()) -> None:
        self.explicit = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts if h.strip())
        self.allowed = self.explicit or frozenset(
            {(urlsplit(u).hostname or "").lower() for u in default_urls} - {""})

    def check(self, host: str, port: int | None = None) -> None:
        name = host.lower().strip("[]")
        if name not in self.allowed:
            raise PermanentSinkError(f"host {name!r} is not in allowed_hosts {sorted(self.allowed)}")
        # loopback only when named in allowed_hosts: a URL alone must not reach services on this host
        explicit_loopback = name in self.explicit
        try:
            infos = socket.getaddrinfo(name, port or 0, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise RetryableSinkError(f"cannot resolve {name!r}: {exc.strerror}") from exc
        for info in infos:
            addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            why = _forbidden_address(addr, loopback_ok=explicit_loopback)
            if why:
                raise PermanentSinkError(f"host {name!r} resolves to {addr}, {why}")


class HttpClient:
    """One httpx client per sink: timeouts, no redirects, the host guard and the error mapping."""

    def __init__(
        self,
        *,
        base_url: str,
        settings: SinkSettings,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        secrets: Sequence[str] = (),
        label: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.guard = HostGuard(settings.allowed_hosts, default_urls=[base_url])
        self.secrets = [s for s in secrets if s.strip("/")]
        self.label = label or (urlsplit(base_url).hostname or "sink")
        self.client = httpx.Client(timeout=httpx.Timeout(settings.timeout_s), follow_redirects=False,
                                   headers=dict(headers or {}), auth=auth, trust_env=False)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        allow: Collection[int] = (),
    ) -> httpx.Response:
        """Send one request; statuses in ``allow`` come back as responses instead of raising."""
        url = self.url(path)
        parts = urlsplit(url)
        self.guard.check(parts.hostname or "", parts.port)
        what = self.redact(f"{method} {self.label}{parts.path}")
        try:
            resp = self.client.request(method, url, json=json, params=params, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryableSinkError(f"{what}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise RetryableSinkError(f"{what}: {self.redact(type(exc).__name__ + ': ' + str(exc))}") from exc
        if resp.status_code not in allow:
            self.raise_for_status(resp, what)
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """``request`` (same arguments) and the decoded JSON body. A success whose body is not JSON is a
        proxy, a login page or a misconfigured URL, not the tool: retrying cannot fix it, so it is
        permanent."""
        return self.decode(self.request(method, path, **kw))

    def decode(self, resp: httpx.Response) -> Any:
        """The JSON body of a response; PermanentSinkError when it is not JSON."""
        try:
            return resp.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both derive from it
            kind = resp.headers.get("content-type", "no content type").split(";", 1)[0]
            snippet = self.redact(" ".join(resp.text[:200].split())) if resp.content else "an empty body"
            where = self.redact(f"{resp.request.method} {self.label}{resp.request.url.path}")
            raise PermanentSinkError(f"{where}: HTTP {resp.status_code} answered with {kind} that is not JSON "
                                     f"(a proxy or login page in front of the tool?): {snippet}") from exc

    def raise_for_status(self, resp: httpx.Response, what: str) -> None:
        code = resp.status_code
        if 200 <= code < 300:
            return
        reason = self.redact(_reason(resp))
        message = f"{what}: HTTP {code} {reason}".rstrip()
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        if code in (408, 429) or code >= 500:
            raise RetryableSinkError(message, retry_after=retry_after)
        if code == 403 and (retry_after is not None or resp.headers.get("x-ratelimit-remaining") == "0"):
            # GitHub signals primary and secondary rate limits with 403
            reset = resp.headers.get("x-ratelimit-reset")
            if retry_after is None and reset and reset.isdigit():
                retry_after = max(0.0, float(reset) - time.time())
            raise RetryableSinkError(message, retry_after=retry_after)
        raise PermanentSinkError(message)

    def close(self) -> None:
        self.client.close()


def expect_object(body: Any, tool: str) -> dict[str, Any]:
    """``body`` when it is a JSON object; anything else means the API changed under us (permanent)."""
    if not isinstance(body, dict):
        raise PermanentSinkError(f"{tool} answered {type(body).__name__} where a JSON object was expected")
    return body


def _reason(resp: httpx.Response) -> str:
    """A short reason from the body: the API's own error message where it gives one."""
    text = resp.text[:2000]
    try:
        body = resp.json()
    except ValueError:
        return " ".join(text.split())[:300] or resp.reason_phrase
    found = _error_text(body)
    return (found or " ".join(text.split()))[:300]


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("errorMessages", "errors", "error", "message", "detail", "reason"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                return "; ".join(str(v) for v in value[:5])
            if isinstance(value, dict) and value:
                inner = _error_text(value)
                return inner or "; ".join(f"{k}: {v}" for k, v in list(value.items())[:5])
    return ""


class MessageMemo:
    """Message ids this process already delivered, so a redelivery (the outbox's commit failed after the
    remote call) does not notify twice; bounded, oldest forgotten first."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._done: OrderedDict[int, TicketRef] = OrderedDict()

    def get(self, message_id: int) -> TicketRef | None:
        return self._done.get(message_id)

    def put(self, message_id: int, ref: TicketRef) -> TicketRef:
        self._done[message_id] = ref
        while len(self._done) > self.size:
            self._done.popitem(last=False)
        return ref


TicketState = Literal["open", "closed", "gone"]


class TicketSink(ABC):
    """The lifecycle shared by ticketing tools; subclasses implement the remote operations.

    Idempotency per fingerprint: an ``open`` looks up the tool's open ticket carrying the fingerprint
    before creating one (a lost local map, or a crash between creating and recording, still finds it);
    each comment carries the message's marker and is posted only when the ticket does not carry it yet;
    a state change is made only when the ticket is not in that state already.
    """

    kind: ClassVar[str] = "ticket"
    settings: TicketSinkSettings

    def __init__(self) -> None:
        self.memo = MessageMemo()
        self._created: dict[str, TicketRef] = {}  # fingerprint -> ticket created by this process

    # remote operations ----------------------------------------------------------------------------
    @abstractmethod
    def find_open(self, notice: Notice) -> TicketRef | None:
        """The tool's open ticket carrying the notice's fingerprint, if any."""

    @abstractmethod
    def create(self, notice: Notice) -> TicketRef:
        """A new ticket with the notice's title and content."""

    @abstractmethod
    def state(self, ref: TicketRef) -> TicketState:
        """Whether the ticket is open, closed (resolved, done, cancelled) or gone (deleted)."""

    @abstractmethod
    def has_comment(self, ref: TicketRef, marker: str) -> bool:
        """Whether the ticket already carries a comment (note, work note) containing ``marker``."""

    @abstractmethod
    def add_comment(self, ref: TicketRef, text: str) -> None:
        """Post one comment."""

    @abstractmethod
    def close(self, ref: TicketRef, notice: Notice) -> None:
        """Move an open ticket to the resolved state (no comment)."""

    @abstractmethod
    def reopen(self, ref: TicketRef, notice: Notice) -> None:
        """Move a closed ticket back to an open state (no comment)."""

    @abstractmethod
    def set_severity(self, ref: TicketRef, notice: Notice) -> None:
        """Make the ticket's priority follow the notice's severity; setting it twice must be harmless."""

    # lifecycle ------------------------------------------------------------------------------------
    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        return done if done is not None else self.memo.put(notice.message_id, self._apply(notice, known))

    def _apply(self, notice: Notice, known: TicketRef | None) -> TicketRef:
        known = known if known is not None and known.remote_id else None
        if notice.action == "open":
            return self._open(notice, known)
        ref = known or self._created.get(notice.fingerprint) or self.find_open(notice)
        if notice.action == "update":
            return self._update(notice, ref)
        return self._resolve(notice, ref)

    def _open(self, notice: Notice, known: TicketRef | None) -> TicketRef:
        if known is not None and self.settings.on_recurrence == "reopen":
            state = self.state(known)
            if state != "gone":  # a deleted last ticket cannot be reopened: a new one, below
                if state == "closed":
                    self.reopen(known, notice)
                self._comment_once(known, notice, prefix="Recurred.")
                self.set_severity(known, notice)
                return known
        ref = self._created.get(notice.fingerprint) or self.find_open(notice)
        return ref if ref is not None else self._create(notice)

    def _update(self, notice: Notice, ref: TicketRef | None) -> TicketRef:
        if ref is None:  # the ticket was never made, and the tool has none open: make one, lose nothing
            return self._create(notice)
        state = self.state(ref)
        if state == "closed" or state == "gone":
            return self._reinstate(notice, ref, state)
        self._comment_once(ref, notice)
        self.set_severity(ref, notice)
        return ref

    def _reinstate(self, notice: Notice, ref: TicketRef, state: Literal["closed", "gone"]) -> TicketRef:
        """The incident is still open but a person closed or deleted its ticket: writing into a ticket
        nobody watches would lose the change, so the ticket comes back (reopened, with
        ``on_recurrence: reopen``, when it still exists; otherwise a new ticket) and says why."""
        why = (f"Ticket {ref.remote_id} was {'closed' if state == 'closed' else 'deleted'} in the tool while the "
               "incident is still open.")
        if state == "closed" and self.settings.on_recurrence == "reopen":
            self.reopen(ref, notice)
            self._comment_once(ref, notice, prefix=f"{why} Reopened.")
            self.set_severity(ref, notice)
            return TicketRef(ref.remote_id, ref.url, reinstated=Reinstated(ref.remote_id, state, "reopened"))
        # an earlier attempt of this message may have made the new ticket already (crash before recording)
        created = self._created.get(notice.fingerprint)
        found = created if created is not None and created.remote_id != ref.remote_id else self.find_open(notice)
        new = found if found is not None and found.remote_id != ref.remote_id else self._create(notice)
        self._comment_once(new, notice, prefix=f"{why} It continues here.")
        return TicketRef(new.remote_id, new.url, reinstated=Reinstated(ref.remote_id, state, "new"))

    def _resolve(self, notice: Notice, ref: TicketRef | None) -> TicketRef:
        self._created.pop(notice.fingerprint, None)
        if ref is None:
            return TicketRef(remote_id="")  # nothing open to resolve
        state = self.state(ref)
        if state == "gone":
            return TicketRef(remote_id="")  # deleted by hand: nothing left to close
        self._comment_once(ref, notice)  # on a ticket closed by hand too: its history shows the recovery
        if state == "open":
            self.close(ref, notice)
        return ref

    def _create(self, notice: Notice) -> TicketRef:
        ref = self.create(notice)
        self._created[notice.fingerprint] = ref
        return ref

    def _comment_once(self, ref: TicketRef, notice: Notice, *, prefix: str = "") -> None:
        if not self.has_comment(ref, message_marker(notice)):
            text = ticket_text(notice)
            self.add_comment(ref, f"{prefix}\n\n{text}" if prefix else text)


def message_marker(notice: Notice) -> str:
    """What identifies a message's comment in a ticket. The action and time after the id keep message 1
    from matching message 12, and a message of a rebuilt state store from matching an older one."""
    return f"aims message {notice.message_id}: {notice.action} at {notice.occurred_at.isoformat()}"


def ticket_text(notice: Notice) -> str:
    """The comment text of an update or resolve: what changed, when, and the incident's identity."""
    return (f"{notice.summary}\n\n"
            f"({message_marker(notice)}; severity {notice.severity}; fingerprint {notice.fingerprint})")


def wall_clock() -> datetime:
    return datetime.now(UTC)
