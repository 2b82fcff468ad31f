"""The benchmark workload: 20 numerical and 5 categorical features, a sensitive feature, label and prediction.

Files are written chunk by chunk (one Parquet row group per chunk), each chunk drawn from its own
generator seeded by ``(seed, side, chunk index)``, so a file of any size is reproducible, a shorter
file is a prefix of a longer one, and no file has to be held in memory whole. ``side`` is
``reference``, ``current`` (some columns shifted, listed in :data:`SHIFTED`) or ``window`` (the
current distribution under other seeds, for the chunked path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Side = Literal["reference", "current", "window"]
FloatArray = npt.NDArray[np.float64]
Draw = Callable[[np.random.Generator, int, bool], npt.NDArray[np.generic]]

#: Rows per chunk and per Parquet row group.
CHUNK_ROWS = 250_000
_SIDE_ID: dict[Side, int] = {"reference": 0, "current": 1, "window": 2}

SENSITIVE = "group"
LABEL = "label"
PREDICTION = "prediction"
GROUPS = ("A", "B", "C", "D")
_GROUP_P = np.array([0.4, 0.3, 0.2, 0.1])


def _with_nan(values: FloatArray, rng: np.random.Generator, share: float) -> FloatArray:
    values[rng.random(values.size) < share] = np.nan
    return values


def _bimodal(rng: np.random.Generator, n: int, weight: float, gap: float) -> FloatArray:
    upper = rng.random(n) < weight
    return np.where(upper, rng.normal(gap, 1.0, n), rng.normal(0.0, 1.0, n))


# Each numerical feature: how to draw n values; the flag says whether this is the shifted (current) side.
# Shifts are far from evidently's 0.1 threshold either way, so the verdicts do not hang on rounding.
NUMERICAL: dict[str, Draw] = {
    "normal_std": lambda r, n, s: r.normal(0.0, 1.0, n),
    "normal_shifted": lambda r, n, s: r.normal(0.5 if s else 0.0, 1.0, n),
    "normal_wide": lambda r, n, s: r.normal(100.0, 25.0, n),
    "normal_scaled": lambda r, n, s: r.normal(0.0, 1.6 if s else 1.0, n),
    "lognormal": lambda r, n, s: r.lognormal(0.0, 1.0, n),
    "lognormal_shifted": lambda r, n, s: r.lognormal(0.4 if s else 0.0, 0.8, n),
    "lognormal_income": lambda r, n, s: r.lognormal(10.5, 0.6, n),
    "student_t3": lambda r, n, s: r.standard_t(3, n),
    "pareto": lambda r, n, s: r.pareto(1.5, n) + 1.0,
    "cauchy_like_shifted": lambda r, n, s: r.standard_t(2, n) + (1.0 if s else 0.0),
    "bimodal": lambda r, n, s: _bimodal(r, n, 0.5, 4.0),
    "bimodal_reweighted": lambda r, n, s: _bimodal(r, n, 0.75 if s else 0.5, 4.0),
    "bimodal_close": lambda r, n, s: _bimodal(r, n, 0.3, 2.0),
    "int_4_values": lambda r, n, s: r.integers(0, 4, n),
    "int_8_values": lambda r, n, s: r.integers(0, 8, n),
    "int_poisson_shifted": lambda r, n, s: r.poisson(4.0 if s else 3.0, n),
    "nan_10pct_normal": lambda r, n, s: _with_nan(r.normal(0.0, 1.0, n), r, 0.10),
    "nan_30pct_lognormal": lambda r, n, s: _with_nan(r.lognormal(0.0, 0.5, n), r, 0.30),
    "nan_5pct_uniform_shifted": lambda r, n, s: _with_nan(r.uniform(0.3 if s else 0.0, 1.0, n), r, 0.05),
    "uniform": lambda r, n, s: r.uniform(-1.0, 1.0, n),
}


def _levels(k: int) -> list[str]:
    return [f"L{k}_{i:02d}" for i in range(k)]


def _zipf_p(k: int, tilt: float) -> FloatArray:
    weights = 1.0 / np.arange(1, k + 1) ** tilt
    return np.asarray(weights / weights.sum(), dtype=np.float64)


# Each categorical feature: (levels, probabilities on the reference side, on the current side).
CATEGORICAL: dict[str, tuple[list[str], FloatArray, FloatArray]] = {
    "cat_10": (_levels(10), _zipf_p(10, 1.0), _zipf_p(10, 1.0)),
    "cat_20_shifted": (_levels(20), _zipf_p(20, 1.0), _zipf_p(20, 1.0)[::-1].copy()),
    "cat_30": (_levels(30), _zipf_p(30, 0.5), _zipf_p(30, 0.5)),
    "cat_40_nudged": (_levels(40), _zipf_p(40, 0.8), _zipf_p(40, 0.85)),
    "cat_50": (_levels(50), _zipf_p(50, 0.0), _zipf_p(50, 0.0)),
}

FEATURES: list[str] = [*NUMERICAL, *CATEGORICAL]
KINDS: dict[str, Literal["numerical", "categorical"]] = {
    **dict.fromkeys(NUMERICAL, "numerical"),
    **dict.fromkeys(CATEGORICAL, "categorical"),
}
#: Columns whose current distribution differs enough to drift under evidently's defaults.
SHIFTED: frozenset[str] = frozenset(c for c in FEATURES if c.endswith("_shifted") or c in {"normal_scaled"}) | {
    "bimodal_reweighted"
}


def chunk(rows: int, *, seed: int, side: Side, index: int) -> pd.DataFrame:
    """Chunk ``index`` of a side: the same rows for the same arguments, on any machine."""
    rng = np.random.default_rng([seed, _SIDE_ID[side], index])
    shifted = side != "reference"
    data: dict[str, object] = {name: draw(rng, rows, shifted) for name, draw in NUMERICAL.items()}
    for name, (levels, ref_p, cur_p) in CATEGORICAL.items():
        codes = rng.choice(len(levels), size=rows, p=cur_p if shifted else ref_p)
        data[name] = pd.Categorical.from_codes(codes.astype(np.int8), categories=levels)
    group = rng.choice(len(GROUPS), size=rows, p=_GROUP_P)
    data[SENSITIVE] = pd.Categorical.from_codes(group.astype(np.int8), categories=list(GROUPS))
    # Base rates and model errors differ by group, so every fairness gap is non-zero.
    label = rng.random(rows) < np.array([0.30, 0.35, 0.40, 0.45])[group]
    flip = rng.random(rows) < np.array([0.10, 0.15, 0.20, 0.25])[group]
    data[LABEL] = label.astype(np.int64)
    data[PREDICTION] = (label ^ flip).astype(np.int64)
    return pd.DataFrame(data)


def write(path: Path, rows: int, *, seed: int, side: Side, chunk_rows: int = CHUNK_ROWS) -> Path:
    """Write ``rows`` rows of ``side`` to ``path`` as Parquet, one row group per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    writer = None
    try:
        for index, start in enumerate(range(0, rows, chunk_rows)):
            # The last chunk is drawn whole and cut, so a shorter file is a prefix of a longer one.
            frame = chunk(chunk_rows, seed=seed, side=side, index=index).iloc[: rows - start]
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table, row_group_size=chunk_rows)
    finally:
        if writer is not None:
            writer.close()
    # Renamed only when complete, so an interrupted run never leaves a file that looks finished.
    partial.replace(path)
    return path


def ensure(directory: Path, rows: int, *, seed: int, side: Side) -> Path:
    """The Parquet file for (side, rows, seed) under ``directory``, written once and reused."""
    path = directory / f"{side}-{rows}-seed{seed}.parquet"
    if not path.exists():
        write(path, rows, seed=seed, side=side)
    return path


def load(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a workload file the way every benchmarked tool receives it (categoricals stay categorical)."""
    return pd.read_parquet(path, columns=columns)
