"""Plugins found by entry points and looked up by a type key; built-ins register the same way.

A plugin class sets ``config_model`` (a pydantic model, ``extra="forbid"``, secrets as ``SecretStr``)
and its constructor takes an instance of it (plus keyword context the agent passes).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from pydantic import BaseModel

SOURCE_GROUP = "aims_agent.sources"
SINK_GROUP = "aims_agent.sinks"


@cache
def _group(group: str) -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    return sorted(_group(group))


def load_plugin(group: str, name: str) -> type | None:
    """The plugin class registered under ``name``, or None if there is none."""
    ep = _group(group).get(name)
    if ep is None:
        return None
    cls = ep.load()  # type: ignore[attr-defined]
    return cls if isinstance(cls, type) else None


def sink_config_model(name: str) -> type[BaseModel] | None:
    cls = load_plugin(SINK_GROUP, name)
    model = getattr(cls, "config_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
