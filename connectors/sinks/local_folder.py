"""The default shell: a local folder of tickets, one Markdown file and one JSON file per incident.

It needs no server, which makes it the demo's and the fallback's shell. Files are written atomically
(temporary file, then rename). A notice already applied (same message id) is not applied twice, so a
redelivery after a crash duplicates nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from config.errors import PermanentSinkError, RetryableSinkError
from config.model import LocalFolderSinkConfig
from connectors.base import Notice, TicketRef

STATUS = {"open": "open", "update": "open", "resolve": "resolved"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "x"


def _write_atomic(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalFolderSink:
    config_model: ClassVar[type[LocalFolderSinkConfig]] = LocalFolderSinkConfig

    def __init__(self, config: LocalFolderSinkConfig, *, base_dir: Path | None = None, **_: Any) -> None:
        p = Path(config.path).expanduser()
        self.root = p if p.is_absolute() or base_dir is None else base_dir / p

    def describe(self) -> str:
        return f"local folder {self.root}"

    def ticket_paths(self, notice: Notice) -> tuple[Path, Path]:
        stem = f"{notice.system_id}-{_slug(notice.kind)}-{_slug(notice.subject)}-{notice.fingerprint[:8]}"
        return self.root / f"{stem}.json", self.root / f"{stem}.md"

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentSinkError(f"cannot create ticket folder {self.root}: {exc.strerror}") from exc
        json_path, md_path = self.ticket_paths(notice)
        try:
            ticket: dict[str, Any] = (
                json.loads(json_path.read_text(encoding="utf-8")) if json_path.exists() else {}
            )
        except (OSError, json.JSONDecodeError) as exc:
            raise RetryableSinkError(f"cannot read {json_path}: {exc}") from exc
        timeline: list[dict[str, Any]] = ticket.get("timeline", [])
        if any(e.get("message_id") == notice.message_id for e in timeline):
            return TicketRef(remote_id=str(json_path.name), url=md_path.as_uri())
        if notice.action == "open" and ticket.get("status") == "resolved":
            ticket["reopened"] = int(ticket.get("reopened", 0)) + 1
        timeline.append({
            "message_id": notice.message_id,
            "action": notice.action,
            "at": notice.occurred_at.isoformat(),
            "severity": notice.severity,
            "summary": notice.summary,
        })
        ticket.update({
            "fingerprint": notice.fingerprint,
            "incident_id": notice.incident_id,
            "system": notice.system_id,
            "kind": notice.kind,
            "subject": notice.subject,
            "status": STATUS[notice.action],
            "severity": notice.severity,
            "title": notice.title,
            "labels": dict(notice.labels),
            "content": dict(notice.content),
            "timeline": timeline,
        })
        md = self._markdown(notice, ticket)
        try:
            _write_atomic(json_path, json.dumps(ticket, indent=2, sort_keys=True, default=str))
            _write_atomic(md_path, md)
        except OSError as exc:
            raise RetryableSinkError(f"cannot write ticket {md_path}: {exc.strerror}") from exc
        return TicketRef(remote_id=str(json_path.name), url=md_path.as_uri())

    @staticmethod
    def _markdown(notice: Notice, ticket: dict[str, Any]) -> str:
        lines = [
            f"# [{ticket['status'].upper()}] {notice.title}",
            "",
            f"- **Severity:** {notice.severity}",
            f"- **System:** {notice.system_id}  ",
            f"- **Kind / subject:** {notice.kind} / {notice.subject}",
            f"- **Fingerprint:** `{notice.fingerprint}`",
            "",
            notice.body_markdown.rstrip(),
            "",
            "## Timeline",
            "",
        ]
        for e in ticket["timeline"]:
            lines.append(f"- {e['at']} **{e['action']}** ({e['severity']}): {e['summary']}")
        return "\n".join(lines) + "\n"
