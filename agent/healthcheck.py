"""The container image's HEALTHCHECK: GET /healthz on the address the running agent actually serves.

``python -m agent.healthcheck`` finds the ``aims-agent run`` process in ``/proc`` and takes its
``--host``/``--port``, else the ``agent.server`` of its ``--config`` file, else the defaults, so a
port changed on the command line, in the config or with ``AIMS_HEALTHCHECK_URL`` is the one probed.
It imports nothing heavy (it runs every 30 s) and exits 0 when the agent answers 200, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

DEFAULT_PORT = 9464
_ANY = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 (a wildcard bind also answers on loopback)


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _config_server(path: str | None) -> dict[str, object]:
    if not path:
        return {}
    try:
        import yaml

        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, ValueError, ImportError):
        return {}
    server = ((doc or {}).get("agent") or {}).get("server") if isinstance(doc, dict) else None
    return server if isinstance(server, dict) else {}


def url_for(argv: Sequence[str]) -> str:
    """The /healthz URL of an agent started with ``argv`` (what ``aims-agent run`` would bind)."""
    server = _config_server(_option(argv, "--config"))
    host = _option(argv, "--host") or str(server.get("host") or "127.0.0.1")
    port_text = _option(argv, "--port") or str(server.get("port") or DEFAULT_PORT)
    port = int(port_text) if port_text.isdigit() else DEFAULT_PORT  # `${VAR}` left unresolved: the default
    if host in _ANY:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def agent_argv(cmdlines: Iterable[Sequence[str]]) -> list[str]:
    """The command line of the ``aims-agent run`` process among ``cmdlines`` ([] when none)."""
    for argv in cmdlines:
        names = [Path(a).name for a in argv[:2]]
        if "aims-agent" in names and "run" in argv:
            return list(argv)
    return []


def _proc_cmdlines() -> Iterator[list[str]]:
    for entry in sorted(Path("/proc").glob("[0-9]*"), key=lambda p: int(p.name)):
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # the process ended while we looked
        if raw:
            yield raw.rstrip(b"\0").decode(errors="replace").split("\0")


def main() -> int:
    url = os.environ.get("AIMS_HEALTHCHECK_URL") or url_for(agent_argv(_proc_cmdlines()))
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (a URL we built)
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"aims-agent healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
