"""Free text: inferred exactly as evidently 0.7.23 infers Text, and under ``auto`` reported as not judged
(never drifted, not in the share) instead of a chi-square that any two samples of free text fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from metrics.drift import column_drift, dataset_drift, is_text
from metrics.evidently_adapter import evidently_drift, evidently_inferred_kinds

N = 40
WORDS = ["late", "payment", "refund", "card", "lost", "fee", "branch", "app", "login", "transfer"]


def _sentences(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, 5)) for _ in range(n)]


def _columns() -> dict[str, pd.Series]:
    rng = np.random.default_rng(3)

    def distinct(k: int) -> list[str]:  # N values of which k are distinct
        return [f"v{i % k}" for i in range(N)]

    with_gaps = pd.Series(distinct(N), dtype=object)
    with_gaps[::3] = None
    first_not_str: list[object] = [1, *distinct(N)[1:]]
    last_not_str: list[object] = [*distinct(N)[:-1], 2.5]
    return {
        "free_text": pd.Series(_sentences(rng, N)),
        "all_distinct": pd.Series(distinct(N)),
        "half_distinct": pd.Series(distinct(N // 2)),  # exactly half: evidently's rule is "more than half"
        "just_over_half": pd.Series(distinct(N // 2 + 1)),
        "few_levels": pd.Series(distinct(3)),
        "string_dtype_text": pd.Series(distinct(N), dtype="string"),
        "string_dtype_levels": pd.Series(distinct(4), dtype="string"),
        "pyarrow_string": pd.Series(distinct(N), dtype=pd.StringDtype("pyarrow")),
        "arrow_dtype_string": pd.Series(distinct(N), dtype=pd.ArrowDtype(pa.string())),
        "category_dtype": pd.Series(distinct(N), dtype="category"),
        "object_with_gaps": with_gaps,
        "first_not_str": pd.Series(first_not_str, dtype=object),
        "last_not_str": pd.Series(last_not_str, dtype=object),
        "all_none": pd.Series([None] * N, dtype=object),
        "floats": pd.Series(rng.normal(size=N)),
        "ints": pd.Series(np.arange(N)),
        "bools": pd.Series(rng.random(N) > 0.5),
        "id_like": pd.Series([f"req-{i:06d}" for i in range(N)]),
    }


def test_text_inference_equals_evidentlys() -> None:
    columns = _columns()
    theirs = evidently_inferred_kinds(pd.DataFrame(columns))
    mismatches = {name: (is_text(s), theirs[name]) for name, s in columns.items()
                  if is_text(s) != (theirs[name] == "text")}
    assert not mismatches, mismatches
    assert theirs["free_text"] == "text" and theirs["half_distinct"] == "cat", "the cases cover both sides"


@pytest.mark.parametrize("n", [300, 2000])  # both sides of evidently's 1000-row switch
def test_free_text_is_not_judged_and_not_counted(n: int) -> None:
    rng = np.random.default_rng(n)
    ref = pd.DataFrame({"complaint": _sentences(rng, n), "amount": rng.normal(size=n)})
    cur = pd.DataFrame({"complaint": _sentences(rng, n), "amount": rng.normal(size=n)})
    ours = dataset_drift(ref, cur, columns=["complaint", "amount"])
    text = ours.columns[0]
    assert (text.status, text.kind, text.drifted) == ("text_not_supported", "text", False)
    assert ours.share == 0.0 and not ours.dataset_drift
    theirs = evidently_drift(ref, cur, ["complaint", "amount"], None)
    assert theirs.columns["complaint"][0].endswith("text_content_drift") and not theirs.columns["complaint"][2]
    single = column_drift(ref["complaint"], cur["complaint"])
    assert single.status == "text_not_supported"


def test_text_columns_alone_are_no_dataset_drift() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"note": _sentences(rng, 500)})
    cur = pd.DataFrame({"note": [f"entirely new wording {i}" for i in range(500)]})
    result = dataset_drift(ref, cur, columns=["note"])
    assert result.columns[0].status == "text_not_supported" and not result.dataset_drift


def test_naming_a_method_or_a_kind_judges_text_as_categories() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"note": _sentences(rng, 500)})
    cur = pd.DataFrame({"note": _sentences(rng, 500)})
    from metrics.drift import DriftSpec

    named = dataset_drift(ref, cur, columns=["note"], spec=DriftSpec(per_column_method={"note": "jensenshannon"}))
    assert (named.columns[0].status, named.columns[0].method, named.columns[0].kind) == (
        "ok", "jensenshannon", "categorical")
    forced = dataset_drift(ref, cur, columns=["note"], kinds={"note": "categorical"})
    assert forced.columns[0].status == "ok" and forced.columns[0].method == "chisquare"
