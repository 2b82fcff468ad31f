"""Load the YAML configuration: ``${ENV}`` interpolation, secrets from files, and every problem at once.

Interpolation forms, inside any string value:

- ``${NAME}``: the environment variable (a problem if unset);
- ``${NAME:-default}``: the variable, or ``default`` when unset or empty;
- ``${file:/path/to/secret}``: the content of a file (trailing newline stripped), for mounted secrets.

``load_config`` raises :class:`config.errors.ConfigError` whose ``problems`` list every error found in
the file, each with its dotted path (``systems.0.window.size``), so a user fixes them in one go.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from config.errors import AimsError, ConfigError, Problem
from config.model import (
    BUILTIN_SOURCE_TYPES,
    AgentConfig,
    Checks,
    FileSourceConfig,
    Schema,
    SnapshotSourceConfig,
    SourceConfig,
    check_problems,
)
from config.playbooks import read_playbooks

_VAR = re.compile(r"\$\{([^}]*)\}")

# A plugin's config class, looked up by sink or source type; the agent passes the registry in, so
# config/ does not import connectors/.
SinkConfigLookup = Callable[[str], type[BaseModel] | None]
SourceConfigLookup = Callable[[str], type[BaseModel] | None]
# The column names of a file reference (None: not looked at), also passed in by the agent; raises an
# AimsError when the file cannot be read.
ReferenceColumnsLookup = Callable[[FileSourceConfig | SnapshotSourceConfig, Path | None], Sequence[str] | None]
_SOURCE: TypeAdapter[Any] = TypeAdapter(SourceConfig)


def _interpolate(node: Any, path: str, env: Mapping[str, str], problems: list[Problem]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}.{i}", env, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def repl(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr.startswith("file:"):
            fpath = Path(expr[5:])
            try:
                return fpath.read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                problems.append(Problem(path, f"cannot read secret file {fpath}: {exc.strerror}"))
                return ""
        name, sep, default = expr.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(Problem(path, f"bad variable reference ${{{expr}}}"))
            return ""
        value = env.get(name)
        if value:
            return value
        if sep:
            return default
        problems.append(Problem(path, f"environment variable {name} is not set"))
        return ""

    return _VAR.sub(repl, node)


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        # one model validator may report several problems joined by "; "
        out.extend(Problem(loc, part) for part in msg.split("; "))
    return out


# pydantic adds the union member's name to the location of errors inside a union; users never wrote it
_UNION_TAGS = {"file", "sql", "http", "cloudevents", "snapshot", "plugin", "FileSourceConfig", "SqlSourceConfig",
               "LocalFolderSinkConfig", "PluginSinkConfig", "local_folder"}


def parse_config(
    raw: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    sink_config: SinkConfigLookup | None = None,
    source_config: SourceConfigLookup | None = None,
    reference_columns: ReferenceColumnsLookup | None = None,
) -> AgentConfig:
    """Validate an already-parsed YAML document; relative file paths are taken from ``base_dir``.

    ``sink_config`` and ``source_config`` give the typed config model of a plugin type (the agent
    passes ``connectors.registry``); without them, a type no built-in provides is a problem.
    ``reference_columns`` (given by the agent) lets validation check that each file reference holds
    the declared features.
    """
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", "the file must be a YAML mapping with `systems:`")], source)
    try:
        data = _interpolate(raw, "", os.environ if env is None else env, problems)
    except RecursionError as exc:
        raise ConfigError([Problem("", "the document nests too deeply or refers to itself (recursive YAML "
                                       "anchors)")], source) from exc
    cfg: AgentConfig | None = None
    problems.extend(_check_sources(data, source_config))
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
        # the whole-file checks do not run when a system is invalid; run them on the raw data instead
        seen = {p.message for p in problems}
        problems.extend(p for p in _raw_reference_problems(data) if p.message not in seen)
    # These run on the raw document, part by part, so that one invalid field elsewhere (a bad role, a
    # typo) does not hide them: every problem is reported at once.
    for problem in [*_check_sinks(data, sink_config), *_check_systems(data, base_dir, reference_columns),
                    *_check_playbooks(data, base_dir)]:
        if problem not in problems:
            problems.append(problem)
    if problems:
        raise ConfigError(problems, source)
    assert cfg is not None
    return cfg


def _raw_reference_problems(data: Any) -> list[Problem]:
    """Duplicate system ids and routes to undeclared sinks, from the raw document."""
    if not isinstance(data, dict) or not isinstance(data.get("systems"), list):
        return []
    sinks = data.get("sinks")
    names = set(sinks) if isinstance(sinks, dict) else {"local"}
    out: list[Problem] = []
    ids: set[object] = set()
    for i, s in enumerate(data["systems"]):
        if not isinstance(s, dict):
            continue
        sid = s.get("id")
        if sid in ids:
            out.append(Problem(f"systems.{i}.id", f"duplicate system id {sid!r}"))
        ids.add(sid)
        routing = s.get("incidents")
        routed = routing.get("sinks", ["local"]) if isinstance(routing, dict) else ["local"]
        for name in routed if isinstance(routed, list) else []:
            if name not in names:
                out.append(Problem(f"systems.{i}.incidents.sinks",
                                   f"system {sid!r} routes to sink {name!r}, which is not under `sinks:`"))
    return out


def _check_sinks(data: Any, lookup: SinkConfigLookup | None) -> list[Problem]:
    """Each plugin sink's keys against the plugin's own typed config."""
    sinks = data.get("sinks") if isinstance(data, dict) else None
    if not isinstance(sinks, dict):
        return []
    problems: list[Problem] = []
    for name, sink in sinks.items():
        if not isinstance(sink, dict) or not isinstance(sink.get("type"), str) or sink["type"] == "local_folder":
            continue  # pydantic reports a missing type; the built-in sink is validated by the model
        cls = lookup(sink["type"]) if lookup else None
        if cls is None:
            problems.append(Problem(f"sinks.{name}.type", f"unknown sink type {sink['type']!r}"))
            continue
        try:
            cls.model_validate(sink)
        except ValidationError as exc:
            problems.extend(Problem(f"sinks.{name}.{p.path}".rstrip("."), p.message) for p in _pydantic_problems(exc))
    return problems


def _check_sources(data: Any, lookup: SourceConfigLookup | None) -> list[Problem]:
    """Validate every plugin-typed source with its plugin's own config model.

    Runs on the raw document, so these problems are reported even when another part of the file is
    invalid (pydantic already checked the built-in types).
    """
    if not isinstance(data, dict) or not isinstance(data.get("systems"), list):
        return []
    problems: list[Problem] = []
    for i, system in enumerate(data["systems"]):
        if not isinstance(system, dict):
            continue
        labels = system.get("labels")
        places = [("source", system.get("source")), ("reference", system.get("reference")),
                  ("labels.source", labels.get("source") if isinstance(labels, dict) else None)]
        for where, src in places:
            kind = src.get("type") if isinstance(src, dict) else None
            if not isinstance(kind, str) or kind in BUILTIN_SOURCE_TYPES:
                continue
            path = f"systems.{i}.{where}"
            try:
                model = lookup(kind) if lookup else None
            except ConfigError as exc:  # registered, but the plugin does not import
                problems.extend(Problem(f"{path}.type", p.message) for p in exc.problems)
                continue
            if model is None:
                problems.append(Problem(f"{path}.type", f"unknown source type {kind!r} (built-in: "
                                        f"{', '.join(BUILTIN_SOURCE_TYPES)}; or a plugin under aims_agent.sources)"))
                continue
            try:
                model.model_validate(src)
            except ValidationError as exc:
                problems.extend(Problem(f"{path}.{p.path}".rstrip("."), p.message) for p in _pydantic_problems(exc))
    return problems


def _valid(model: Any, raw: Any) -> Any:
    """``raw`` validated by ``model`` (a pydantic model or TypeAdapter), or None when invalid: pydantic
    has reported why already."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(raw)
        return model.model_validate(raw)
    except ValidationError:
        return None


def _check_systems(data: Any, base_dir: Path | None, columns_of: ReferenceColumnsLookup | None) -> list[Problem]:
    """Per system: the reference file exists and holds the declared features, and the checks fit the schema."""
    systems = data.get("systems") if isinstance(data, dict) else None
    if not isinstance(systems, list):
        return []
    problems: list[Problem] = []
    for i, raw in enumerate(systems):
        if not isinstance(raw, dict):
            continue
        schema = _valid(Schema, raw.get("schema"))
        checks = _valid(Checks, raw.get("checks", {}))
        if schema is not None and checks is not None:
            problems.extend(Problem(f"systems.{i}.{p.path}", p.message) for p in check_problems(schema, checks))
        ref = _valid(_SOURCE, raw.get("reference"))
        if isinstance(ref, FileSourceConfig | SnapshotSourceConfig):
            problems.extend(_reference_problems(i, ref, schema, base_dir, columns_of))
    return problems


def _reference_problems(i: int, ref: FileSourceConfig | SnapshotSourceConfig, schema: Schema | None,
                        base_dir: Path | None, columns_of: ReferenceColumnsLookup | None) -> list[Problem]:
    where = f"systems.{i}.reference.path"
    if "://" not in ref.path:
        path = resolve_path(ref.path, base_dir)
        if not any(ch in ref.path for ch in "*?[") and not path.exists():
            return [Problem(where, f"no such file or folder: {path}")]
    if columns_of is None or schema is None:
        return []
    try:
        present = columns_of(ref, base_dir)
    except AimsError as exc:
        return [Problem(where, f"cannot read the reference data: {exc}")]
    if present is None:  # a store the lookup does not open just to validate (object storage, KServe logs)
        return []
    missing = [c for c in schema.features if c not in set(present)]
    # A feature the reference lacks would silently never be judged for drift.
    return [Problem(f"systems.{i}.schema.features.{c}", f"not a column of the reference data ({ref.path})")
            for c in missing]


def _check_playbooks(data: Any, base_dir: Path | None) -> list[Problem]:
    """The organisation's playbook file and every system's override, each checked against the schema."""
    if not isinstance(data, dict):
        return []
    agent = data.get("agent")
    files: list[tuple[str, Any]] = [("agent.playbooks_file",
                                     agent.get("playbooks_file") if isinstance(agent, dict) else None)]
    systems = data.get("systems")
    for i, system in enumerate(systems if isinstance(systems, list) else []):
        routing = system.get("incidents") if isinstance(system, dict) else None
        files.append((f"systems.{i}.incidents.playbooks",
                      routing.get("playbooks") if isinstance(routing, dict) else None))
    problems: list[Problem] = []
    for where, ref in files:
        if isinstance(ref, str) and ref:
            _, found = read_playbooks(resolve_path(ref, base_dir))
            problems.extend(Problem(f"{where}.{p.path}".rstrip("."), p.message) for p in found)
    return problems


def resolve_path(path: str, base_dir: Path | None) -> Path:
    """Relative paths in a config file are relative to the file, not to the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else (base_dir / p)


def load_config(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    sink_config: SinkConfigLookup | None = None,
    source_config: SourceConfigLookup | None = None,
    reference_columns: ReferenceColumnsLookup | None = None,
) -> AgentConfig:
    """Read and validate a config file; raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read {p}: {exc.strerror}")], str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"not UTF-8 text (byte {exc.start}): {exc.reason}")], str(p)) from exc
    try:
        raw = yaml.safe_load(text)
    except RecursionError as exc:
        raise ConfigError([Problem("", "invalid YAML: nested too deeply")], str(p)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", f"{where}invalid YAML: {reason}")], str(p)) from exc
    return parse_config(raw, source=str(p), base_dir=p.parent.resolve(), env=env, sink_config=sink_config,
                        source_config=source_config, reference_columns=reference_columns)


def config_digest(cfg: AgentConfig) -> str:
    """A stable digest of the effective configuration, secrets included only as their own digest."""
    dumped = cfg.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
