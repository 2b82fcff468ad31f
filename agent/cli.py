"""The ``aims-agent`` command line. Imports are lazy so ``--help`` and ``config validate`` start fast.

Exit codes everywhere: 0 fine, 1 something breached (or a ledger failed verification), 2 bad input or
configuration, with a one-line reason on stderr and never a traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from datetime import datetime

    from config.errors import ConfigError

EXIT_OK, EXIT_BREACH, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> NoReturn:
    print(f"aims-agent: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) like every other bad input."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{self.prog.removeprefix('aims-agent ')}: {message} (see --help)"
              if self.prog != "aims-agent" else f"{message} (see --help)")


def _when(raw: str, option: str) -> datetime:
    """An ISO 8601 time given on the command line; one without a zone is UTC (as the help says)."""
    from datetime import UTC, datetime

    try:
        ts = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option} {raw!r} is not an ISO 8601 time (e.g. 2026-01-05T12:00:00Z)")
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _check_when(raw: str | None, option: str) -> None:
    if raw:
        _when(raw, option)


def _check_listen(host: str, port: int) -> None:
    """Fail with one line before starting when the address cannot be bound (uvicorn would exit 1: a
    'breach' to a supervisor script)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _write_output(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")


def _print_problems(where: str, exc: ConfigError) -> None:
    """One problem is one line; several are listed under a count, each with its path."""
    if len(exc.problems) == 1:
        print(f"{where}: {exc.problems[0]}", file=sys.stderr)
        return
    print(f"{where}: {len(exc.problems)} problem(s)", file=sys.stderr)
    for p in exc.problems:
        print(f"  - {p}", file=sys.stderr)


def _load(path: str, *, isolated: bool = False) -> Any:
    """The validated config. ``isolated``: the references' headers are read in a short-lived process,
    so this one (the service) never imports pandas or pyarrow."""
    from agent.preflight import IsolatedColumns, reference_columns
    from config.loader import load_config
    from connectors.registry import sink_config_model, source_config_model

    if not isolated:
        return load_config(path, sink_config=sink_config_model, source_config=source_config_model,
                           reference_columns=reference_columns)
    with IsolatedColumns() as columns:
        return load_config(path, sink_config=sink_config_model, source_config=source_config_model,
                           reference_columns=columns)


def _agent(path: str, *, isolated: bool = False) -> Any:
    from agent.runner import Agent

    cfg = _load(path, isolated=isolated)
    return Agent(cfg, base_dir=Path(path).resolve().parent)


def cmd_config_validate(args: argparse.Namespace) -> int:
    from config.errors import ConfigError

    try:
        cfg = _load(args.file)
    except ConfigError as exc:
        _print_problems(args.file, exc)
        return EXIT_ERROR
    print(f"{args.file}: valid ({len(cfg.systems)} system(s), {len(cfg.sinks)} sink(s))")
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace) -> int:
    from agent.inventory import render_inventory

    cfg = _load(args.config)
    sys.stdout.write(render_inventory(cfg, args.format))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    now = _when(args.now, "--now") if args.now else None
    agent = _agent(args.config)
    try:
        ids = [args.system] if args.system else [s.id for s in agent.cfg.systems]
        for sid in ids:
            try:
                agent.cfg.system(sid)
            except KeyError:
                _fail(f"no system {sid!r} in {args.config}")
        # what the service records at start and after checks, a cron job records too
        agent.record_config_loaded(args.config, only_if_changed=True)
        outcomes = [o for sid in ids for o in agent.run_system(sid, now)]
        if outcomes:
            agent.record_reassessment_triggers(now)
        agent.deliver()
        decisions = [d for sid in ids for d in agent.decisions(sid)]
    finally:
        agent.close()
    breached = [d for d in decisions if d["state"] == "breach"]
    failed = [o for o in outcomes if o.status == "failed"]
    if args.format == "json":
        print(json.dumps({
            "windows": [{"system": o.system_id, "start": o.window_start.isoformat(), "end": o.window_end.isoformat(),
                         "status": o.status, "rows": o.rows, "error": o.error} for o in outcomes],
            "decisions": [{**d, "updated_at": d["updated_at"].isoformat()} for d in decisions],
        }, indent=2, default=str))
    else:
        print(f"{len(outcomes)} window(s) judged, {len(failed)} failed")
        for o in outcomes:
            print(f"  {o.system_id:<24} {o.window_start:%Y-%m-%d %H:%M} .. {o.window_end:%Y-%m-%d %H:%M}  "
                  f"{o.status:<18} rows={o.rows}" + (f"  error: {o.error}" if o.error else ""))
        for d in decisions:
            print(f"  {d['system']:<24} {d['check']:<17} {d['subject']:<24} {d['state']}")
    if failed:  # a window that could not be read is worse than a breach: monitoring is blind
        print(f"aims-agent: {failed[0].error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_BREACH if breached else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from agent.service import check_bind, serve

    agent = _agent(args.config, isolated=True)
    host = args.host or agent.cfg.agent.server.host
    port = args.port or agent.cfg.agent.server.port
    check_bind(agent, host)  # before anything is recorded: a refused start leaves no evidence behind
    _check_listen(host, port)
    agent.record_config_loaded(args.config)
    try:
        serve(agent, host=host, port=port)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot start; 1 means "breach" here
        if exc.code not in (0, None):
            _fail(f"the server on {host}:{port} stopped (exit status {exc.code}); see the log above")
        raise
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from agent.compare import run_compare

    return run_compare(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    if args.serve is not None:
        _check_listen("127.0.0.1", args.serve)
    return run_demo(out=Path(args.out), days=args.days, serve_port=args.serve, fast=args.fast)


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from agent.evidence_pack import verify_path

    # verify_path tells unusable input (exit 2) from tampering (exit 1) itself
    status, message = verify_path(args.path, key_file=args.key_file)
    print(message, file=sys.stdout if status == EXIT_OK else sys.stderr)
    return status


@contextmanager
def _evidence(config: str) -> Iterator[tuple[Any, Any, Any]]:
    """The config, its ledger (control mapping and signing key) and its state store, closed afterwards."""
    from agent.evidence import ledger_from_config
    from agent.store import Store

    cfg = _load(config)
    ledger = ledger_from_config(cfg.agent.evidence, Path(config).resolve().parent)
    store = Store(cfg.agent.state_url.get_secret_value())
    try:
        yield cfg, ledger, store
    finally:
        store.close()


def cmd_evidence_export(args: argparse.Namespace) -> int:
    from agent.evidence_pack import export_pack

    _check_when(args.since, "--since")
    _check_when(args.until, "--until")
    with _evidence(args.config) as (_, ledger, store):
        manifest = export_pack(store, Path(args.out), since=args.since, until=args.until, system=args.system,
                               signer=ledger.signer, control_map=ledger.control_map)
    signed = " (signed)" if "signature" in manifest else ""
    print(f"wrote {manifest['records']} record(s) to {args.out}{signed} (verify with: aims-agent evidence verify "
          f"{args.out})")
    return EXIT_OK


def cmd_evidence_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from agent.retention import purge
    from config.errors import LedgerIntegrityError

    now = _when(args.now, "--now") if args.now else datetime.now(UTC)
    with _evidence(args.config) as (cfg, ledger, store):
        try:
            result = purge(store, ledger, now if now.tzinfo else now.replace(tzinfo=UTC),
                           cfg.agent.evidence.retention_days, dry_run=args.dry_run)
        except LedgerIntegrityError as exc:
            from agent.evidence_pack import failure

            print(f"aims-agent: refusing to purge: {failure(exc)}", file=sys.stderr)
            return EXIT_BREACH
    print(result.describe())
    return EXIT_OK


def cmd_evidence_push(args: argparse.Namespace) -> int:
    from agent.evidence_pack import push_to_grc

    _check_when(args.since, "--since")
    _check_when(args.until, "--until")
    with _evidence(args.config) as (cfg, ledger, store):
        result = push_to_grc(store, cfg.agent.evidence, since=args.since, until=args.until, system=args.system,
                             signer=ledger.signer, control_map=ledger.control_map)
    what = "new evidence" if result.created else f"revision {result.version} of evidence"
    verb = "pushed the pack" if result.uploaded else "the pack was pushed before, nothing sent"
    print(f"{verb} (sha256 {result.sha256}) as {what} {result.evidence_id}; linked to "
          f"{len(result.linked)} requirement assessment(s)"
          + (f"; no requirement assessment for {', '.join(result.unmatched)}" if result.unmatched else ""))
    return EXIT_OK


def cmd_reference_freeze(args: argparse.Namespace) -> int:
    from agent.reference import freeze_reference
    from agent.runner import build_source

    agent = _agent(args.config)
    try:
        try:
            system = agent.cfg.system(args.system)
        except KeyError:
            _fail(f"no system {args.system!r} in {args.config}")
        source = build_source(system, "source", agent.base_dir, agent.store)
        try:
            frozen = freeze_reference(agent.store, agent.ledger, source, system_id=system.id,
                                      columns=agent._columns(system), since=_when(args.since, "--since"),
                                      until=_when(args.until, "--until"), out=Path(args.out), now=agent.clock())
        finally:
            source.close()
    finally:
        agent.close()
    print(f"froze {frozen.rows} row(s) of {system.id} to {frozen.path} (sha256 {frozen.digest}); recorded as "
          f"evidence record {frozen.record_seq}\nto compare windows with it, set the system's reference to:\n"
          f"  reference: {{type: snapshot, path: {frozen.path}, digest: {frozen.digest}}}")
    return EXIT_OK


def cmd_modelcard(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from agent.modelcard import model_card_section

    with _evidence(args.config) as (cfg, _, store):
        try:
            cfg.system(args.system)
        except KeyError:
            _fail(f"no system {args.system!r} in {args.config}")
        text = model_card_section(store, cfg, args.system, datetime.now(UTC), days=args.days)
    if args.output:
        _write_output(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_risk_export(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from agent.risk import render_risk, risk_register

    with _evidence(args.config) as (cfg, _, store):
        entries = risk_register(store, cfg, datetime.now(UTC), days=args.days)
    sys.stdout.write(render_risk(entries, args.format))
    return EXIT_OK


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from agent.incidents import Outbox

    with _evidence(args.config) as (_, ledger, store):
        entries = Outbox(store, ledger, {}).entries(status=args.status, limit=args.limit)
    if args.format == "json":
        print(json.dumps([e.__dict__ for e in entries], indent=2, default=str))
        return EXIT_OK
    if not entries:
        print("no notifications" + (f" with status {args.status}" if args.status else ""))
    for e in entries:
        status = "held" if e.held else e.status
        error = f"  {e.error_kind}: {e.last_error}" if e.last_error else ""
        print(f"{e.id:>8}  {e.sink:<16} {e.action:<8} {status:<10} incident {e.incident_id:<6} "
              f"attempts {e.attempts:<4} created {e.created_at:%Y-%m-%d %H:%M}{error}"[:400])
    return EXIT_OK


def _outbox_change(args: argparse.Namespace, what: str) -> int:
    import getpass

    from agent.incidents import Outbox

    by = args.by or getpass.getuser()
    with _evidence(args.config) as (_, ledger, store):
        box = Outbox(store, ledger, {})
        entry = (box.requeue(args.id, by=by, reason=args.reason) if what == "requeue"
                 else box.discard(args.id, by=by, reason=args.reason))
    if entry is None:
        _fail(f"no outbox message {args.id}")
    done = ("requeued: the running agent delivers it (and the rest of its ticket) on its next pass"
            if what == "requeue" else "discarded: the later notifications of its ticket go out on the next pass")
    print(f"message {entry.id} to {entry.sink} ({entry.action} of incident {entry.incident_id}) {done}")
    return EXIT_OK


def cmd_outbox_requeue(args: argparse.Namespace) -> int:
    return _outbox_change(args, "requeue")


def cmd_outbox_discard(args: argparse.Namespace) -> int:
    return _outbox_change(args, "discard")


def build_parser() -> argparse.ArgumentParser:
    from agent.arguments import port, positive_int

    p = _Parser(prog="aims-agent", description="Model monitoring for ISO/IEC 42001 AI "
                                "management systems: drift, data quality, performance and fairness to "
                                "Prometheus, incidents into your ticketing tool, tamper-evident evidence.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="run the service: scheduled checks, API and /metrics")
    s.add_argument("--config", required=True)
    s.add_argument("--host")
    s.add_argument("--port", type=port)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("check", help="one pass over the due windows (for cron or CI): exit 0 ok, 1 breach, 2 error")
    s.add_argument("--config", required=True)
    s.add_argument("--system")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--now", help="judge as if it were this ISO 8601 time (UTC)")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("compare", help="compare two data files, no config needed")
    from agent.compare import add_arguments

    add_arguments(s)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("demo", help="simulate a deployed credit-scoring model and watch it (no server needed)")
    s.add_argument("--out", default="./aims-demo",
                   help="folder for the demo's database, tickets and evidence (default ./aims-demo); an existing "
                   "folder is replaced only if an earlier demo run created it, or if it is empty")
    s.add_argument("--days", type=positive_int, default=14)
    s.add_argument("--serve", type=port, nargs="?", const=9464, default=None, metavar="PORT",
                   help="afterwards, serve the API and /metrics on 127.0.0.1:PORT (default 9464)")
    s.add_argument("--fast", action="store_true", help="fewer rows per simulated hour (for tests)")
    s.set_defaults(func=cmd_demo)

    cfg = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_cmd", required=True)
    s = cfg.add_parser("validate", help="report every problem in a config file at once (exit 2 if any)")
    s.add_argument("file")
    s.set_defaults(func=cmd_config_validate)

    s = sub.add_parser("inventory", help="print the AI system inventory (for the AIMS register)")
    s.add_argument("--config", required=True)
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.set_defaults(func=cmd_inventory)

    ev = sub.add_parser("evidence", help="evidence ledger tools").add_subparsers(dest="evidence_cmd", required=True)
    s = ev.add_parser("verify", help="verify a ledger (state store URL or config) or an exported pack")
    s.add_argument("path", help="an evidence pack folder, a records .jsonl file, a config file or a database URL")
    s.add_argument("--key-file", help="check the signature with this key: the published Ed25519 public key "
                   "(PEM) or the shared HMAC secret")
    s.set_defaults(func=cmd_evidence_verify)
    s = ev.add_parser("export", help="export a period as an evidence pack (records, controls.csv, report.html, "
                      "manifest)")
    s.add_argument("--config", required=True)
    s.add_argument("--since", help="from (ISO 8601, inclusive)")
    s.add_argument("--until", help="until (ISO 8601, exclusive)")
    s.add_argument("--system", help="only this system's records (others are withheld as digests)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evidence_export)
    s = ev.add_parser("purge", help="remove evidence older than agent.evidence.retention_days (the chain stays "
                      "verifiable)")
    s.add_argument("--config", required=True)
    s.add_argument("--dry-run", action="store_true", help="say what would be purged, change nothing")
    s.add_argument("--now", help="purge as if it were this ISO 8601 time (UTC)")
    s.set_defaults(func=cmd_evidence_purge)
    s = ev.add_parser("push", help="export a period and push it to the GRC tool in agent.evidence.grc (CISO "
                      "Assistant)")
    s.add_argument("--config", required=True)
    s.add_argument("--since")
    s.add_argument("--until")
    s.add_argument("--system")
    s.set_defaults(func=cmd_evidence_push)

    rf = sub.add_parser("reference", help="reference data tools").add_subparsers(dest="reference_cmd",
                                                                                  required=True)
    s = rf.add_parser("freeze", help="freeze a past window of a system's source as a snapshot (Parquet, its "
                      "SHA-256 in a sidecar and in the evidence ledger) to use as its reference")
    s.add_argument("--config", required=True)
    s.add_argument("--system", required=True)
    s.add_argument("--since", required=True, help="from (ISO 8601, inclusive; UTC unless a zone is given)")
    s.add_argument("--until", required=True, help="until (ISO 8601, exclusive)")
    s.add_argument("--out", required=True, help="the snapshot's path (.parquet); never overwritten")
    s.set_defaults(func=cmd_reference_freeze)

    s = sub.add_parser("modelcard", help="print the monitoring section of a system's model card (Markdown)")
    s.add_argument("--config", required=True)
    s.add_argument("system")
    s.add_argument("--days", type=positive_int, default=90, help="the period to summarise (default 90 days)")
    s.add_argument("-o", "--output", help="write to this file instead of stdout")
    s.set_defaults(func=cmd_modelcard)

    ob = sub.add_parser("outbox", help="the delivery outbox: list notifications, requeue or discard a dead one"
                        ).add_subparsers(dest="outbox_cmd", required=True)
    s = ob.add_parser("list", help="notifications, newest first (held: waiting behind a dead one of its ticket)")
    s.add_argument("--config", required=True)
    s.add_argument("--status", choices=["pending", "delivered", "dead", "discarded"])
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_outbox_list)
    s = ob.add_parser("requeue", help="give a dead notification a fresh retry budget (recorded as evidence)")
    s.add_argument("--config", required=True)
    s.add_argument("id", type=int, help="the message id (from `outbox list --status dead`)")
    s.add_argument("--by", help="who decides (default: the login name)")
    s.add_argument("--reason", help="why, e.g. what was fixed")
    s.set_defaults(func=cmd_outbox_requeue)
    s = ob.add_parser("discard", help="abandon a dead notification for good, releasing the later ones of its "
                      "ticket (recorded as evidence)")
    s.add_argument("--config", required=True)
    s.add_argument("id", type=int)
    s.add_argument("--by", help="who decides (default: the login name)")
    s.add_argument("--reason", required=True, help="why it is abandoned")
    s.set_defaults(func=cmd_outbox_discard)

    rk = sub.add_parser("risk", help="AI risk signals for the risk register").add_subparsers(dest="risk_cmd",
                                                                                          required=True)
    s = rk.add_parser("export", help="one risk-register entry per system and monitored risk")
    s.add_argument("--config", required=True)
    s.add_argument("--format", choices=["csv", "json"], default="csv")
    s.add_argument("--days", type=positive_int, default=90, help="the period the likelihood is judged on (default 90)")
    s.set_defaults(func=cmd_risk_export)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from config.errors import AimsError, ConfigError

    try:
        code = int(args.func(args))
    except ConfigError as exc:
        if args.debug:
            raise
        _print_problems(f"aims-agent: {exc.source or 'config'}", exc)
        return EXIT_ERROR
    except AimsError as exc:
        if args.debug:
            raise
        print(f"aims-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a file or socket we were pointed at: bad input, not a breach
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"aims-agent: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # the last line of defence: one line and exit 2, never 1 ("breach")
        if args.debug:
            raise
        text = " ".join(str(exc).split())[:300]
        print(f"aims-agent: unexpected error: {type(exc).__name__}: {text} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    raise SystemExit(main())
