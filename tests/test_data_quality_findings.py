"""Data-quality findings of a window against its reference profile, with counts, and no crashes."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import MetricInputError
from metrics.quality import MAX_CATEGORIES, ColumnKind, QualityReport, ReferenceProfile, data_quality


def reference() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "income": [100.0, 250.0, 812.0, 400.0, np.nan],
            "age": [18, 30, 45, 60, 77],
            "city": ["Paris", "Lyon", "Paris", "Nice", None],
            "plan": [1, 2, 3, 1, 2],
        }
    )


def profile() -> ReferenceProfile:
    return ReferenceProfile.from_frame(reference(), kinds={"plan": "categorical"})


def findings_by_kind(report: QualityReport, column: str) -> dict[str, tuple[int, str]]:
    return {f.kind: (f.count, f.detail) for f in report.findings if f.column == column}


def test_profile_remembers_kinds_ranges_categories_and_missing_share() -> None:
    columns = profile().columns
    assert columns["income"].kind == "numerical"
    assert (columns["income"].min, columns["income"].max) == (100.0, 812.0)
    assert columns["income"].missing_share == pytest.approx(0.2)
    assert columns["city"].kind == "categorical"
    assert columns["city"].categories == frozenset({"Paris", "Lyon", "Nice"})
    assert columns["plan"].categories == frozenset({"1", "2", "3"})


def test_missing_values_are_counted_with_their_share() -> None:
    current = reference().assign(city=["Paris", None, None, "Lyon", np.nan])
    report = data_quality(current, profile())
    assert report.missing_share["city"] == pytest.approx(0.6)
    assert findings_by_kind(report, "city")["missing"][0] == 3
    assert report.missing_share["age"] == 0.0


def test_values_a_numerical_column_cannot_read_as_numbers_are_type_errors() -> None:
    current = reference().assign(income=pd.Series(["120", "1.5e2", "n/a", "?", 300], dtype=object))
    report = data_quality(current, profile())
    count, detail = findings_by_kind(report, "income")["type_error"]
    assert count == 2
    assert "'n/a'" in detail
    assert "dtype_change" in findings_by_kind(report, "income")


def test_infinite_values_are_non_finite_not_out_of_range() -> None:
    current = reference().assign(income=[np.inf, -np.inf, 200.0, 300.0, 400.0])
    found = findings_by_kind(data_quality(current, profile()), "income")
    assert found["non_finite"][0] == 2
    assert "out_of_range" not in found


def test_values_outside_the_reference_range_are_counted_on_both_sides() -> None:
    current = reference().assign(income=[50.0, 900.0, 1000.0, 813.0, 812.0])
    count, detail = findings_by_kind(data_quality(current, profile()), "income")["out_of_range"]
    assert count == 4
    assert "1 values below the reference min 100.0" in detail
    assert "3 values above the reference max 812.0" in detail


def test_categories_the_reference_never_had_are_counted() -> None:
    current = reference().assign(city=["Paris", "Lille", "Lille", "Brest", None])
    count, detail = findings_by_kind(data_quality(current, profile()), "city")["unseen_category"]
    assert count == 3
    assert detail.startswith("3 values in 2 categories the reference never had, e.g. 'Lille', 'Brest'")


def test_integer_categories_still_match_after_turning_float_through_a_missing_value() -> None:
    current = reference().assign(plan=[1.0, 2.0, np.nan, 3.0, 1.0])
    found = findings_by_kind(data_quality(current, profile()), "plan")
    assert "unseen_category" not in found
    assert "dtype_change" not in found
    assert found["missing"][0] == 1


def test_schema_changes_are_findings() -> None:
    current = reference().drop(columns=["age"]).assign(score=0.5, city=[1, 2, 3, 4, 5])
    report = data_quality(current, profile())
    assert [(f.kind, f.column) for f in report.findings if f.kind in ("missing_column", "new_column")] == [
        ("missing_column", "age"),
        ("new_column", "score"),
    ]
    assert report.missing_share["age"] == 1.0
    assert findings_by_kind(report, "city")["dtype_change"][1] == "dtype object (text) became int64 (numeric)"
    assert report.count("missing_column") == 1
    assert report.values("unseen_category") == 5


def test_a_reference_with_too_many_categories_keeps_the_most_frequent_and_judges_none_unseen() -> None:
    values = [f"id{i}" for i in range(MAX_CATEGORIES + 500)] + ["common"] * 10
    ref = pd.DataFrame({"user": values})
    prof = ReferenceProfile.from_frame(ref, kinds={})
    column = prof.columns["user"]
    assert not column.categories_complete
    assert len(column.categories) == MAX_CATEGORIES
    assert "common" in column.categories
    report = data_quality(pd.DataFrame({"user": ["brand-new"] * 3}), prof)
    assert report.count("unseen_category") == 0


def test_ten_thousand_current_categories_are_handled() -> None:
    prof = ReferenceProfile.from_frame(pd.DataFrame({"c": ["a", "b"]}), kinds={})
    current = pd.DataFrame({"c": [f"v{i}" for i in range(10_000)] + ["a"]})
    (finding,) = data_quality(current, prof).findings
    assert (finding.kind, finding.count) == ("unseen_category", 10_000)


def test_empty_frames_and_all_missing_columns_do_not_crash() -> None:
    prof = profile()
    empty = data_quality(reference().iloc[:0], prof)
    assert empty.rows == 0
    assert empty.findings == []
    assert empty.missing_share == dict.fromkeys(prof.columns, 0.0)

    no_columns = data_quality(pd.DataFrame(), prof)
    assert no_columns.count("missing_column") == 4

    all_missing = reference().assign(income=None, city=np.nan)
    report = data_quality(all_missing, prof)
    assert report.missing_share["income"] == 1.0
    assert report.count("dtype_change") == 0
    assert report.count("type_error") == 0

    ReferenceProfile.from_frame(pd.DataFrame({"x": [np.nan, np.nan]}), kinds={"x": "numerical"})
    ReferenceProfile.from_frame(pd.DataFrame(), kinds={})


def test_mixed_type_columns_and_huge_strings_do_not_crash() -> None:
    huge = "x" * 2_000_000
    mixed = pd.Series([1, "2", 3.5, None, [1, 2], {"a": 1}, huge, b"bytes", True, np.inf], dtype=object)
    ref = pd.DataFrame({"num": np.arange(10, dtype=float), "cat": ["a"] * 10})
    prof = ReferenceProfile.from_frame(ref, kinds={})
    report = data_quality(pd.DataFrame({"num": mixed, "cat": mixed}), prof)
    num = findings_by_kind(report, "num")
    assert num["type_error"][0] == 4  # the list, the dict, the huge string and the bytes; True reads as 1
    assert num["non_finite"][0] == 1
    assert all(len(f.detail) < 500 for f in report.findings)
    ReferenceProfile.from_frame(pd.DataFrame({"num": mixed, "cat": mixed}), kinds={"num": "numerical"})


def test_kinds_for_columns_the_reference_lacks_and_unknown_finding_kinds_are_refused() -> None:
    with pytest.raises(MetricInputError):
        ReferenceProfile.from_frame(reference(), kinds={"nope": "numerical"})
    with pytest.raises(MetricInputError):
        data_quality(reference(), profile()).count("typo")


_cell = st.one_of(
    st.none(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(
    ref=st.lists(st.tuples(_cell, _cell), max_size=15),
    cur=st.lists(st.tuples(_cell, _cell), max_size=15),
    kinds=st.tuples(st.sampled_from(["numerical", "categorical"]), st.sampled_from(["numerical", "categorical"])),
)
def test_any_mix_of_values_gives_a_report_with_consistent_counts(
    ref: list[tuple[object, object]], cur: list[tuple[object, object]], kinds: tuple[str, str]
) -> None:
    reference_frame = pd.DataFrame(ref, columns=["a", "b"], dtype=object)
    current_frame = pd.DataFrame(cur, columns=["a", "b"], dtype=object)
    prof = ReferenceProfile.from_frame(
        reference_frame, kinds=cast(dict[str, ColumnKind], {"a": kinds[0], "b": kinds[1]})
    )
    report = data_quality(current_frame, prof)
    assert report.rows == len(cur)
    for finding in report.findings:
        assert 0 <= finding.count <= max(len(cur), 0)
        assert 0.0 <= finding.share <= 1.0
