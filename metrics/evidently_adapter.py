"""The one place that talks to evidently (0.7 API): its drift verdicts and HTML, for tests and reports.

evidently is imported inside the functions: it is heavy, and its API moves between releases, so
nothing else in aims-agent imports it and importing this module costs nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from config.errors import MetricInputError
from metrics.stattests import ColumnKind

ColumnVerdict = tuple[str, float, bool]


def _data_definition(columns: Sequence[str], kinds: Mapping[str, ColumnKind] | None) -> Any:
    from evidently import DataDefinition

    if kinds is None:
        return None
    return DataDefinition(
        numerical_columns=[c for c in columns if kinds.get(c) == "numerical"],
        categorical_columns=[c for c in columns if kinds.get(c) == "categorical"],
    )


def _name_by_display_name() -> dict[str, str]:
    """Evidently reports an auto-chosen test by its display name; map it back to the registered name."""
    from evidently.legacy.calculations import stattests

    names: dict[str, str] = {}
    for attr in stattests.__all__:
        obj = getattr(stattests, attr)
        if isinstance(obj, stattests.StatTest):
            names[obj.display_name] = obj.name
    return names


def _run(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    kinds: Mapping[str, ColumnKind] | None,
    method: str | Mapping[str, str] | None,
    threshold: float | Mapping[str, float] | None,
    drift_share: float = 0.5,
    per_column_method: Mapping[str, str] | None = None,
    per_column_threshold: Mapping[str, float] | None = None,
) -> Any:
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = _data_definition(columns, kinds)
    cols = list(columns)
    ref = Dataset.from_pandas(reference[cols], data_definition=definition)
    cur = Dataset.from_pandas(current[cols], data_definition=definition)
    # A mapping given as ``method``/``threshold`` and the per-column arguments are both per column.
    methods = {**(method if isinstance(method, Mapping) else {}), **(per_column_method or {})}
    thresholds = {**(threshold if isinstance(threshold, Mapping) else {}), **(per_column_threshold or {})}
    preset = DataDriftPreset(
        columns=cols,
        drift_share=drift_share,
        method=method if isinstance(method, str) else None,
        per_column_method=methods or None,
        threshold=threshold if isinstance(threshold, float | int) else None,
        per_column_threshold=thresholds or None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Report([preset], include_tests=True).run(cur, ref)
        except ValueError as exc:
            raise MetricInputError(f"evidently could not compute drift: {exc}") from exc


def evidently_column_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    kinds: Mapping[str, ColumnKind] | None,
    method: str | Mapping[str, str] | None = None,
    threshold: float | Mapping[str, float] | None = None,
) -> dict[str, ColumnVerdict]:
    """Evidently 0.7 DataDriftPreset's verdict per column: (stattest name, score, drifted).

    ``kinds=None`` lets evidently infer column types; ``method``/``threshold`` may be one value for
    every column or a mapping per column (None: evidently's defaults).
    """
    snapshot = _run(reference, current, columns, kinds, method, threshold)
    return _verdicts(snapshot)


def _verdicts(snapshot: Any) -> dict[str, ColumnVerdict]:
    names = _name_by_display_name()
    report = snapshot.dict()
    status_by_column: dict[str, bool] = {}
    for test in report["tests"]:
        prefix = "Value Drift for column "
        if test["name"].startswith(prefix):
            status_by_column[test["name"][len(prefix) :]] = test["status"] == "FAIL"
    result: dict[str, ColumnVerdict] = {}
    for metric in report["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        column = config["column"]
        raw_method = config["method"]
        result[column] = (names.get(raw_method, raw_method), float(metric["value"]), status_by_column[column])
    return result


@dataclass(frozen=True)
class EvidentlyDrift:
    """Evidently's verdicts from one DataDriftPreset run."""

    columns: dict[str, ColumnVerdict]
    drifted_count: int
    share: float
    dataset_drift: bool


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    kinds: Mapping[str, ColumnKind] | None,
    method: str | Mapping[str, str] | None = None,
    threshold: float | Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    *,
    per_column_method: Mapping[str, str] | None = None,
    per_column_threshold: Mapping[str, float] | None = None,
) -> EvidentlyDrift:
    """Per-column and dataset verdicts of one evidently DataDriftPreset run.

    ``method``/``threshold`` as one value apply to every column, and ``per_column_method``/
    ``per_column_threshold`` override them for the columns they name (evidently's precedence). The
    dataset verdict is evidently's own: its DriftedColumnsCount test fails when the drifted share is
    not below ``drift_share``.
    """
    snapshot = _run(reference, current, columns, kinds, method, threshold, drift_share, per_column_method,
                    per_column_threshold)
    report = snapshot.dict()
    counted = [m for m in report["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount")]
    share_tests = [
        t for t in report["tests"] if t["metric_config"]["params"]["type"].endswith("DriftedColumnsCount")
    ]
    if len(counted) != 1 or len(share_tests) != 1:
        raise MetricInputError("evidently returned no single DriftedColumnsCount and its test")
    count, share = int(counted[0]["value"]["count"]), float(counted[0]["value"]["share"])
    return EvidentlyDrift(_verdicts(snapshot), count, share, share_tests[0]["status"] == "FAIL")


def evidently_dataset_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    kinds: Mapping[str, ColumnKind] | None,
    drift_share: float = 0.5,
) -> tuple[int, float, bool]:
    """Evidently's dataset verdict: (drifted column count, drifted share, dataset drift)."""
    result = evidently_drift(reference, current, columns, kinds, drift_share=drift_share)
    return result.drifted_count, result.share, result.dataset_drift


def evidently_stattest(
    name: str, reference: pd.Series, current: pd.Series, kind: ColumnKind, threshold: float | None = None
) -> tuple[float, bool]:
    """One evidently stattest called directly on two cleaned series: (score, drifted).

    Much faster than a report; the report path (:func:`evidently_drift`) is what users see.
    """
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = get_stattest(reference, current, column_type, name)
        result = test(reference, current, column_type, threshold)
    return float(result.drift_score), bool(result.drifted)


def evidently_html_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    kinds: Mapping[str, ColumnKind] | None,
) -> str:
    """Evidently's own HTML drift report (self-contained) for embedding in an evidence pack."""
    snapshot = _run(reference, current, columns, kinds, None, None)
    html: str = snapshot.get_html_str(as_iframe=False)
    return html


def evidently_inferred_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """The column type evidently infers for each column without a data definition (its enum value).

    Values are evidently's own names: ``num``, ``cat``, ``text``, ``datetime``, ``unknown``, ``list``.
    """
    from evidently import Dataset

    definition = Dataset.from_pandas(frame).data_definition
    return {str(c): definition.get_column_type(c).value for c in frame.columns}
