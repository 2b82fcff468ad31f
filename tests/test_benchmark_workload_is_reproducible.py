"""The benchmark workload is reproducible and shaped as documented, and the harness runs end to end.

No performance is asserted here: the figures come from ``python -m benchmarks.run`` (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks import workload
from metrics.drift import dataset_drift

ROOT = Path(__file__).resolve().parent.parent


def test_same_seed_writes_identical_files_in_row_groups(tmp_path: Path) -> None:
    first = workload.write(tmp_path / "a.parquet", 12_000, seed=3, side="current", chunk_rows=5_000)
    again = workload.write(tmp_path / "b.parquet", 12_000, seed=3, side="current", chunk_rows=5_000)
    other = workload.write(tmp_path / "c.parquet", 12_000, seed=4, side="current", chunk_rows=5_000)
    pd.testing.assert_frame_equal(workload.load(first), workload.load(again))
    assert not workload.load(first)["normal_std"].equals(workload.load(other)["normal_std"])
    assert [pq.ParquetFile(first).metadata.row_group(i).num_rows for i in range(3)] == [5_000, 5_000, 2_000]
    assert not (tmp_path / "a.parquet.partial").exists()


def test_a_longer_file_starts_with_the_rows_of_a_shorter_one(tmp_path: Path) -> None:
    short = workload.write(tmp_path / "short.parquet", 7_000, seed=1, side="window", chunk_rows=5_000)
    long = workload.write(tmp_path / "long.parquet", 15_000, seed=1, side="window", chunk_rows=5_000)
    pd.testing.assert_frame_equal(workload.load(short), workload.load(long).iloc[:7_000])
    pd.testing.assert_frame_equal(workload.load(short).iloc[:5_000], workload.load(long).iloc[:5_000])


def test_workload_has_the_documented_columns() -> None:
    frame = workload.chunk(20_000, seed=0, side="reference", index=0)
    assert len(workload.NUMERICAL) == 20
    assert len(workload.CATEGORICAL) == 5
    assert list(frame.columns) == [*workload.FEATURES, workload.SENSITIVE, workload.LABEL, workload.PREDICTION]
    for name in workload.NUMERICAL:
        assert pd.api.types.is_numeric_dtype(frame[name].dtype), name
    levels = sorted(frame[name].nunique() for name in workload.CATEGORICAL)
    assert levels == [10, 20, 30, 40, 50]
    assert frame["int_4_values"].nunique() == 4
    assert pd.api.types.is_integer_dtype(frame["int_8_values"].dtype)
    assert 0.08 < frame["nan_10pct_normal"].isna().mean() < 0.12
    assert 0.27 < frame["nan_30pct_lognormal"].isna().mean() < 0.33
    assert frame["pareto"].max() > 100 * frame["pareto"].median()  # heavy tail
    assert sorted(frame[workload.SENSITIVE].unique()) == list(workload.GROUPS)
    assert set(np.unique(frame[workload.LABEL])) == {0, 1}
    assert set(np.unique(frame[workload.PREDICTION])) == {0, 1}


def test_exactly_the_shifted_columns_drift() -> None:
    reference = workload.chunk(20_000, seed=5, side="reference", index=0)
    current = workload.chunk(20_000, seed=5, side="current", index=0)
    result = dataset_drift(reference, current, columns=workload.FEATURES, kinds=workload.KINDS)
    assert {c.column for c in result.columns if c.drifted} == workload.SHIFTED
    assert {c.method for c in result.columns} == {"wasserstein", "jensenshannon"}


@pytest.mark.slow
def test_harness_runs_end_to_end_on_a_tiny_workload(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.run", "--rows", "20000", "--window-rows", "40000"]
    command += ["--sample-rows", "20000", "--data-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results-20000.json").read_text())
    assert results["drift"]["check"]["identical"]
    assert sorted(results["drift"]["check"]["drifted_ours"]) == sorted(workload.SHIFTED)
    assert results["fairness"]["max_abs_diff"] <= 1e-12
    assert results["chunked"]["rows"] == 40_000
    assert results["chunked"]["verdicts_equal_on_sample"]
    assert results["chunked"]["fairness_max_abs_diff_on_sample"] <= 1e-12
    for run in (results["drift"]["ours"], results["drift"]["evidently"], results["chunked"]["process"]):
        assert run["wall_s"] > 0
        assert run["peak_rss_mib"] >= run["rss_after_load_mib"] > 0
    assert set(results["cli_start_s"]) == {"python -c pass", "aims-agent --help", "aims-agent compare --help"}
    assert "| evidently 0.7 DataDriftPreset |" in (tmp_path / "results-20000.md").read_text()
