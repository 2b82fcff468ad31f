"""Plugins found by entry points and looked up by a type key; built-ins register the same way.

A plugin class sets ``config_model`` (a pydantic model, ``extra="forbid"``, secrets as ``SecretStr``)
and its constructor takes an instance of it (plus keyword context the agent passes). The config loader
is handed :func:`sink_config_model` and :func:`source_config_model`, so a plugin's own keys are checked
with everything else before the agent starts.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from config.errors import ConfigError, Problem

SOURCE_GROUP = "aims_agent.sources"
SINK_GROUP = "aims_agent.sinks"


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    return sorted(_group(group))


def load_plugin(group: str, name: str) -> type | None:
    """The plugin class registered under ``name``, or None if there is none.

    A registered plugin that cannot be imported is a ConfigError naming it (not a traceback).
    """
    ep = _group(group).get(name)
    if ep is None:
        return None
    try:
        cls = ep.load()
    except Exception as exc:  # a third-party module can fail to import in any way
        raise ConfigError([Problem(f"{group}:{name}", f"the plugin {ep.value!r} cannot be loaded: "
                                   f"{type(exc).__name__}: {exc}")]) from exc
    return cls if isinstance(cls, type) else None


def _config_model(group: str, name: str) -> type[BaseModel] | None:
    model = getattr(load_plugin(group, name), "config_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def sink_config_model(name: str) -> type[BaseModel] | None:
    return _config_model(SINK_GROUP, name)


def source_config_model(name: str) -> type[BaseModel] | None:
    return _config_model(SOURCE_GROUP, name)
