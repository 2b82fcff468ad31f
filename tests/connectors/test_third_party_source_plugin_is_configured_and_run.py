"""A source type from a third-party distribution is configured, validated with its own model, and run.

The plugin is a real distribution on ``sys.path`` (a package plus a ``.dist-info`` with
``entry_points.txt``), found by ``importlib.metadata`` exactly as an installed wheel would be; nothing
in the registry is patched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.runner import Agent
from config.errors import ConfigError
from config.loader import load_config
from connectors import registry
from connectors.registry import SOURCE_GROUP, sink_config_model, source_config_model
from tests.conftest import T0, Scenario, make_rows

PLUGIN = '''
"""A tab-separated prediction log: a source plugin outside aims-agent."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, SecretStr


class TsvConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["tsvlog"] = "tsvlog"
    path: str = Field(min_length=1)
    delimiter: str = Field(default="\\t", min_length=1, max_length=1)
    token: SecretStr | None = None


class TsvSource:
    config_model: ClassVar[type[TsvConfig]] = TsvConfig

    def __init__(self, config: TsvConfig, *, timestamp_column: str | None, **_: Any) -> None:
        assert isinstance(config, TsvConfig), type(config)
        self.config = config
        self.timestamp_column = timestamp_column

    def _frame(self) -> pd.DataFrame:
        return pd.read_csv(self.config.path, sep=self.config.delimiter)

    def read_all(self, *, columns):
        df = self._frame()
        return df[[c for c in columns if c in df.columns]]

    def read_window(self, start, end, *, columns):
        df = self._frame()
        ts = pd.to_datetime(df[self.timestamp_column], utc=True)
        df = df.loc[((ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))).to_numpy()]
        return df[[c for c in columns if c in df.columns]].reset_index(drop=True)

    def describe(self) -> str:
        return f"tsvlog:{self.config.path}"

    def close(self) -> None:
        return None
'''


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution ``aims-tsv-source`` registering ``tsvlog`` under ``aims_agent.sources``."""
    site = tmp_path / "site"
    (site / "aims_tsv_source").mkdir(parents=True)
    (site / "aims_tsv_source" / "__init__.py").write_text(PLUGIN)
    info = site / "aims_tsv_source-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aims-tsv-source\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{SOURCE_GROUP}]\ntsvlog = aims_tsv_source:TsvSource\n")
    (info / "RECORD").write_text("")
    monkeypatch.syspath_prepend(str(site))
    registry._group.cache_clear()  # entry points are read once per process; this one was just installed
    yield site
    registry._group.cache_clear()
    sys.modules.pop("aims_tsv_source", None)


def _tsv_config(scenario: Scenario, **source: Any) -> dict[str, Any]:
    cfg = scenario.config()
    cfg["systems"][0]["source"] = {"type": "tsvlog", "path": str(scenario.dir / "log.tsv"), **source}
    cfg["systems"][0]["checks"]["fairness"]["enabled"] = False
    return cfg


def test_a_plugin_source_type_validates_with_its_own_model_and_is_judged(plugin_site: Path,
                                                                         scenario: Scenario) -> None:
    assert "tsvlog" in registry.plugin_names(SOURCE_GROUP)
    make_rows(scenario.rng, 300, T0).to_csv(scenario.dir / "log.tsv", sep="\t", index=False)
    scenario.rewrite(_tsv_config(scenario, token="tsv-secret-token"))
    cfg = load_config(scenario.config_path, sink_config=sink_config_model, source_config=source_config_model)
    assert "tsv-secret-token" not in repr(cfg.systems[0].source)
    agent = Agent(cfg, base_dir=scenario.dir)
    try:
        outcomes = agent.run_system("scoring", now=T0 + timedelta(hours=1, minutes=1))
    finally:
        agent.close()
    assert [(o.status != "failed", o.rows) for o in outcomes] == [(True, 300)]


def test_every_problem_of_a_plugin_source_is_reported_with_the_rest(plugin_site: Path, scenario: Scenario) -> None:
    cfg = _tsv_config(scenario, delimiter="::", colour="blue")
    cfg["systems"][0]["window"]["size"] = "soon"  # a problem outside the plugin's keys, reported alongside
    cfg["systems"][0]["reference"] = {"type": "nosuchsource", "path": "x"}
    scenario.rewrite(cfg)
    with pytest.raises(ConfigError) as err:
        load_config(scenario.config_path, sink_config=sink_config_model, source_config=source_config_model)
    found = {(p.path, p.message.split(" (")[0]) for p in err.value.problems}
    assert ("systems.0.source.delimiter", "String should have at most 1 character") in found
    assert ("systems.0.source.colour", "unknown key") in found
    assert ("systems.0.reference.type", "unknown source type 'nosuchsource'") in found
    assert any(p.path == "systems.0.window.size" for p in err.value.problems)


def test_the_cli_finds_the_plugin_of_an_installed_distribution(plugin_site: Path, scenario: Scenario) -> None:
    scenario.rewrite(_tsv_config(scenario))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.getcwd()])}
    cli = [sys.executable, "-m", "agent.cli", "config", "validate", str(scenario.config_path)]
    ok = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    scenario.rewrite(_tsv_config(scenario, delimter=","))
    bad = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 2
    assert "systems.0.source.delimter: unknown key" in bad.stderr and "Traceback" not in bad.stderr
    # without the distribution the type is unknown, and said so in one line
    plain = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert plain.returncode == 2 and "unknown source type 'tsvlog'" in plain.stderr


def test_a_plugin_that_does_not_import_is_a_config_problem(plugin_site: Path, scenario: Scenario) -> None:
    (plugin_site / "aims_tsv_source" / "__init__.py").write_text("raise RuntimeError('broken build')\n")
    sys.modules.pop("aims_tsv_source", None)
    scenario.rewrite(_tsv_config(scenario))
    with pytest.raises(ConfigError) as err:
        load_config(scenario.config_path, sink_config=sink_config_model, source_config=source_config_model)
    assert [p.path for p in err.value.problems] == ["systems.0.source.type"]
    assert "broken build" in err.value.problems[0].message


def test_yaml_config_of_a_plugin_source_keeps_unknown_keys_for_the_plugin() -> None:
    # the plugin's keys survive the built-in model untouched, so the plugin sees what the user wrote
    from pydantic import TypeAdapter

    from config.model import PluginSourceConfig, SourceConfig

    doc = yaml.safe_load(textwrap.dedent("""
        type: tsvlog
        path: /data/log.tsv
        delimiter: ","
    """))
    cfg = TypeAdapter(SourceConfig).validate_python(doc)
    assert isinstance(cfg, PluginSourceConfig) and cfg.model_dump() == doc
