"""Every source type is an entry-point plugin with a typed config whose secrets stay secret."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, TypeAdapter

from config.model import SourceConfig, SqlSourceConfig
from connectors.registry import SOURCE_GROUP, load_plugin
from connectors.sources.sql import SqlSource

EXAMPLES = {
    "file": {"type": "file", "path": "s3://bucket/logs/", "partitioning": "hive",
             "storage_secrets": {"secret": "aws-secret"}},
    "sql": {"type": "sql", "url": "postgresql+psycopg://u:pw@db/x", "table": "p",
            "watermark": {"column": "id", "kind": "id"}},
    "http": {"type": "http", "url": "https://api.example.com/preds", "pagination": "cursor",
             "auth_value": "Bearer tok"},
    "cloudevents": {"type": "cloudevents", "system": "scoring", "feature_names": ["a", "b"]},
    "snapshot": {"type": "snapshot", "path": "ref/w.parquet", "digest": "0" * 64},
}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_each_source_type_validates_and_resolves_to_its_plugin(kind: str) -> None:
    cfg = TypeAdapter(SourceConfig).validate_python(EXAMPLES[kind])
    cls = load_plugin(SOURCE_GROUP, kind)
    assert cls is not None
    model = cls.config_model  # type: ignore[attr-defined]
    assert isinstance(model, type) and issubclass(model, BaseModel) and isinstance(cfg, model)
    for secret in ("aws-secret", "pw@", "Bearer tok"):
        assert secret not in repr(cfg) and secret not in str(cfg.model_dump())


def test_unknown_keys_and_bad_watermark_kinds_are_config_errors() -> None:
    with pytest.raises(ValueError, match="kind"):
        TypeAdapter(SourceConfig).validate_python({**EXAMPLES["sql"], "watermark": {"column": "id", "kind": "x"}})
    with pytest.raises(ValueError, match="pagnation"):
        TypeAdapter(SourceConfig).validate_python({**EXAMPLES["http"], "pagnation": "page"})


def test_the_sql_description_hides_the_password() -> None:
    src = SqlSource(SqlSourceConfig.model_validate(EXAMPLES["sql"]), timestamp_column="ts")
    assert "pw" not in src.describe() and "***" in src.describe()
