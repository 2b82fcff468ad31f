"""schemathesis generates requests from the OpenAPI schema of a populated agent: none may end in a 5xx."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

from agent.api import create_app
from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, make_rows, scenario_config

TOKEN = "fuzz-token-0123456789abcdef"


def _populated_app() -> object:
    tmp = Path(tempfile.mkdtemp(prefix="aims-fuzz-"))
    rng = np.random.default_rng(5)
    make_rows(rng, 2000, T0 - timedelta(days=2), span=timedelta(days=1)).to_parquet(tmp / "reference.parquet")
    db = tmp / "predictions.db"
    cfg = scenario_config(tmp, db, f"sqlite:///{tmp / 'state.db'}")
    cfg["agent"]["tokens"] = [{"name": "fuzz", "value": TOKEN, "scopes": ["read", "operate", "ingest"]}]
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    import sqlite3

    con = sqlite3.connect(db)
    for h, shift in enumerate([0.0, 2.0, 2.0]):
        make_rows(rng, 300, T0 + timedelta(hours=h), shift=shift).to_sql("predictions", con, if_exists="append",
                                                                         index=False)
    con.close()
    agent = Agent(load_config(tmp / "config.yaml"), base_dir=tmp)
    agent.record_config_loaded(str(tmp / "config.yaml"))
    agent.run_system("scoring", T0 + timedelta(hours=3))
    agent.deliver(T0 + timedelta(hours=3))
    return create_app(agent)


schema = schemathesis.openapi.from_asgi("/openapi.json", _populated_app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_ends_in_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
