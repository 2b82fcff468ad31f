"""A large window judged chunk by chunk from mergeable states, never held in memory whole.

Parquet row groups are read with pyarrow's ``iter_batches``. Per chunk and feature a state is built
and merged into the window's: a :class:`metrics.sketch.HistogramState` on reference-fixed edges for
numerical features (plus exact value counts where the reference has at most
:data:`VALUE_COUNT_LIMIT` distinct values, the case where evidently bins one value per bin), category
counts for categorical features (counted on the Arrow dictionary codes, never as strings), and
:class:`metrics.fairness.FairnessCounts` for fairness. The test for each feature is chosen by
evidently's ``auto`` rule, as the exact path does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from benchmarks import workload
from metrics.fairness import FairnessCounts
from metrics.sketch import (
    CategoryState,
    HistogramState,
    jensenshannon_from_states,
    reference_edges,
    wasserstein_from_states,
)

#: evidently bins numerical features with at most this many distinct reference values one value per bin.
VALUE_COUNT_LIMIT = 20
#: Rows per batch read from Parquet.
BATCH_ROWS = 250_000

FloatArray = npt.NDArray[np.float64]


@dataclass
class FeatureStates:
    """The mergeable states of every feature (and the fairness counts) of one window."""

    histograms: dict[str, HistogramState] = field(default_factory=dict)
    values: dict[str, CategoryState] = field(default_factory=dict)
    fairness: FairnessCounts | None = None
    rows: int = 0


@dataclass(frozen=True)
class Reference:
    """Reference-side states and what the window's states are judged against."""

    states: FeatureStates
    edges: dict[str, FloatArray]
    std: dict[str, float]  # exact population std of each numerical feature, as evidently norms by


def _finite(values: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _value_counts(arr: FloatArray) -> CategoryState:
    keys, counts = np.unique(arr, return_counts=True)
    return CategoryState(dict(zip(keys.tolist(), counts.tolist(), strict=True)))


def _dictionary_counts(column: Any) -> CategoryState:
    """Category counts from an Arrow dictionary column, counted on its integer codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        return CategoryState.from_values(column.to_pandas())
    present = pc.drop_null(column)
    codes = np.asarray(present.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.bincount(codes, minlength=len(present.dictionary))
    levels = present.dictionary.to_pylist()
    return CategoryState({levels[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()})


def prepare_reference(reference: pd.DataFrame) -> Reference:
    """Edges, states and standard deviations of the reference, computed once."""
    states = FeatureStates(rows=len(reference))
    edges: dict[str, FloatArray] = {}
    std: dict[str, float] = {}
    for name in workload.NUMERICAL:
        arr = _finite(reference[name].to_numpy(dtype=np.float64, na_value=np.nan))
        edges[name] = reference_edges(arr)
        states.histograms[name] = HistogramState.from_values(edges[name], arr)
        std[name] = float(np.std(arr))
        if np.unique(arr).size <= VALUE_COUNT_LIMIT:
            states.values[name] = _value_counts(arr)
    for name in workload.CATEGORICAL:
        states.values[name] = CategoryState.from_values(reference[name].dropna())
    return Reference(states, edges, std)


def batches(path: Path, *, rows: int | None = None, batch_rows: int = BATCH_ROWS) -> Iterator[Any]:
    """Arrow record batches of a Parquet file, the first ``rows`` rows only when given."""
    import pyarrow.parquet as pq

    seen = 0
    # pre_buffer=False: with it, pyarrow reads ahead far past the batch asked for (1.8 GiB peak on 10M rows).
    with pq.ParquetFile(path, pre_buffer=False) as source:
        for batch in source.iter_batches(batch_size=batch_rows):
            if rows is not None and seen >= rows:
                return
            if rows is not None and seen + batch.num_rows > rows:
                batch = batch.slice(0, rows - seen)
            seen += batch.num_rows
            yield batch


def add_batch(states: FeatureStates, reference: Reference, batch: Any) -> None:
    """Fold one Arrow record batch into ``states``."""
    for name in workload.NUMERICAL:
        column = batch.column(name)
        arr = _finite(column.to_numpy(zero_copy_only=False))
        chunk_state = HistogramState.from_values(reference.edges[name], arr)
        previous = states.histograms.get(name)
        states.histograms[name] = chunk_state if previous is None else previous.merge(chunk_state)
        if name in reference.states.values:
            counts = _value_counts(arr)
            seen = states.values.get(name)
            states.values[name] = counts if seen is None else seen.merge(counts)
    for name in workload.CATEGORICAL:
        counts = _dictionary_counts(batch.column(name))
        seen = states.values.get(name)
        states.values[name] = counts if seen is None else seen.merge(counts)
    fair = FairnessCounts.from_arrays(
        y_pred=batch.column(workload.PREDICTION).to_numpy(),
        y_true=batch.column(workload.LABEL).to_numpy(),
        sensitive=batch.column(workload.SENSITIVE).to_pandas().rename(workload.SENSITIVE),
    )
    states.fairness = fair if states.fairness is None else states.fairness.merge(fair)
    states.rows += batch.num_rows


def window_states(path: Path, reference: Reference, *, rows: int | None = None) -> FeatureStates:
    """The merged states of a window file (its first ``rows`` rows when given), chunk by chunk."""
    states = FeatureStates()
    for batch in batches(path, rows=rows):
        add_batch(states, reference, batch)
    return states


@dataclass(frozen=True)
class StateVerdict:
    """Drift of one feature judged from states."""

    column: str
    method: str
    score: float
    drifted: bool


def judge(reference: Reference, window: FeatureStates, *, threshold: float = 0.1) -> list[StateVerdict]:
    """evidently's ``auto`` test on each feature, from states (reference above 1000 rows: distances only)."""
    out = []
    for name in workload.FEATURES:
        if name in workload.CATEGORICAL:
            method, score = (
                "jensenshannon",
                jensenshannon_from_states(reference.states.values[name], window.values[name]),
            )
        else:
            ref_values = reference.states.values.get(name)
            cur_values = window.values.get(name)
            few = (
                ref_values is not None
                and cur_values is not None
                and len(set(ref_values.counts) | set(cur_values.counts)) <= 5
            )
            if few and ref_values is not None and cur_values is not None:
                method, score = "jensenshannon", jensenshannon_from_states(ref_values, cur_values)
            else:
                method = "wasserstein"
                score = wasserstein_from_states(
                    reference.states.histograms[name], window.histograms[name], reference_std=reference.std[name]
                )
        out.append(StateVerdict(name, method, score, bool(score >= threshold and not math.isnan(score))))
    return out
