"""Render the aims-agent Helm chart's templates without the helm binary (not installable here).

The chart is written in a deliberately small subset of Go templates: value references
(``.Values.a.b``, ``.Release.Name``, ``.Release.Namespace``, ``.Release.Service``, ``.Chart.X``),
``if``/``else``/``end``, and the pipeline functions ``default``, ``quote``, ``toYaml``, ``nindent`` and
``indent``, with ``{{-``/``-}}`` whitespace trimming. This renderer implements that subset with Helm's
semantics and raises on anything else, so a template that leaves the subset fails the tests rather than
being rendered wrongly. A missing value raises too (Helm would print ``<no value>``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-)?\s*(.*?)\s*(-)?\}\}", re.DOTALL)
_MISSING = object()


class TemplateError(Exception):
    """The template uses something outside the subset, or references a missing value."""


@dataclass
class _Node:
    kind: str  # text | expr | if
    text: str = ""
    then: list[_Node] = field(default_factory=list)
    otherwise: list[_Node] = field(default_factory=list)


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = src[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(tokens: list[tuple[str, str]]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node, list[_Node]]] = []
    current = root
    for kind, value in tokens:
        if kind == "text":
            current.append(_Node("text", value))
        elif value.startswith("if "):
            node = _Node("if", value[3:].strip())
            current.append(node)
            stack.append((node, current))
            current = node.then
        elif value == "else":
            if not stack:
                raise TemplateError("else without if")
            current = stack[-1][0].otherwise
        elif value == "end":
            if not stack:
                raise TemplateError("end without if")
            current = stack.pop()[1]
        elif value.startswith("/*") or value.split(" ")[0] in ("range", "with", "define", "include", "template"):
            raise TemplateError(f"{{{{ {value} }}}} is outside the chart's template subset")
        else:
            current.append(_Node("expr", value))
    if stack:
        raise TemplateError("if without end")
    return root


def _truthy(value: Any) -> bool:
    return value is not _MISSING and value is not None and value is not False and value != 0 and value != "" \
        and value != [] and value != {}


def _to_yaml(value: Any) -> str:
    # Helm's toYaml (sigs.k8s.io/yaml) sorts keys and drops the final newline
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


class Chart:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = yaml.safe_load((path / "Chart.yaml").read_text())
        self.defaults = yaml.safe_load((path / "values.yaml").read_text())

    def render(self, *, release: str = "credit-scoring", namespace: str = "default",
               values: dict[str, Any] | None = None) -> dict[str, str]:
        merged = _merge(self.defaults, values or {})
        ctx = {"Values": merged, "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
               "Chart": {"Name": self.meta["name"], "Version": self.meta["version"],
                         "AppVersion": self.meta["appVersion"]}}
        out = {}
        for tpl in sorted((self.path / "templates").glob("*.yaml")):
            out[tpl.name] = "".join(_render(_parse(_tokens(tpl.read_text())), ctx))
        return out

    def documents(self, **kw: Any) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for name, text in self.render(**kw).items():
            try:
                docs.extend(d for d in yaml.safe_load_all(text) if d)
            except yaml.YAMLError as exc:
                raise TemplateError(f"{name} does not render to YAML: {exc}\n{text}") from exc
        return docs


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def _render(nodes: list[_Node], ctx: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        if n.kind == "text":
            out.append(n.text)
        elif n.kind == "if":
            out.extend(_render(n.then if _truthy(_pipeline(n.text, ctx)) else n.otherwise, ctx))
        else:
            value = _pipeline(n.text, ctx)
            if value is _MISSING or value is None:
                raise TemplateError(f"{{{{ {n.text} }}}} has no value")
            out.append(value if isinstance(value, str) else _scalar(value))
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TemplateError(f"cannot print {type(value).__name__} without toYaml")


def _arg(token: str, ctx: dict[str, Any]) -> Any:
    if token.startswith('"') and token.endswith('"'):
        return json.loads(token)
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token.startswith("."):
        node: Any = ctx
        for part in token[1:].split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node
    raise TemplateError(f"unknown argument {token!r}")


def _pipeline(expr: str, ctx: dict[str, Any]) -> Any:
    stages = [s.strip().split() for s in expr.split("|")]
    first = stages[0]
    if first[0] in ("toYaml", "quote") and len(first) == 2:
        value = _apply(first[0], [], _arg(first[1], ctx), ctx)
    elif len(first) == 1:
        value = _arg(first[0], ctx)
    else:
        raise TemplateError(f"unsupported expression {expr!r}")
    for stage in stages[1:]:
        value = _apply(stage[0], stage[1:], value, ctx)
    return value


def _apply(fn: str, args: list[str], value: Any, ctx: dict[str, Any]) -> Any:
    if fn == "default" and len(args) == 1:
        return value if _truthy(value) else _arg(args[0], ctx)
    if value is _MISSING:
        raise TemplateError(f"{fn} of a missing value")
    if fn == "quote" and not args:
        return json.dumps(value if isinstance(value, str) else _scalar(value))
    if fn == "toYaml" and not args:
        return _to_yaml(value)
    if fn in ("nindent", "indent") and len(args) == 1:
        pad = " " * int(args[0])
        body = "\n".join(pad + line for line in str(value).split("\n"))
        return "\n" + body if fn == "nindent" else body
    raise TemplateError(f"function {fn} {' '.join(args)} is outside the chart's template subset")
