"""How fairness forms groups, binarises predictions, merges chunked counts and handles odd inputs."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import MetricInputError
from metrics.fairness import (
    MISSING_GROUP,
    FairnessCounts,
    binarise,
    fairness,
    fairness_from_counts,
)


def test_missing_sensitive_values_form_their_own_group() -> None:
    sensitive = pd.DataFrame({"sex": ["F", None, "M", np.nan, pd.NA, "F"]}, dtype=object)
    result = fairness(y_pred=pd.Series([1, 0, 1, 1, 0, 0]), sensitive=sensitive, min_group_size=0)
    groups = {g.group: g for g in result.groups}
    assert set(groups) == {"F", "M", MISSING_GROUP}
    assert groups[MISSING_GROUP].count == 3
    assert groups[MISSING_GROUP].selection_rate == pytest.approx(1 / 3)


def test_missing_values_in_categorical_and_float_sensitive_columns_form_the_missing_group() -> None:
    sensitive = pd.DataFrame(
        {
            "band": pd.Categorical(["a", None, "b", "a"], categories=["a", "b", "unused"]),
            "score_band": [1.0, 2.0, np.nan, 1.0],
        }
    )
    result = fairness(y_pred=pd.Series([1, 0, 1, 1]), sensitive=sensitive, min_group_size=0)
    assert result.sensitive == "band+score_band"
    assert [g.group for g in result.groups] == ["(missing)+2.0", "a+1.0", "b+(missing)"]


def test_intersection_groups_are_named_by_values_joined_in_feature_order() -> None:
    sensitive = pd.DataFrame({"sex": ["F", "F", "M", "M"], "age_band": ["young", "old", "young", "young"]})
    result = fairness(y_pred=pd.Series([1, 0, 0, 1]), sensitive=sensitive, min_group_size=0)
    assert result.sensitive == "sex+age_band"
    assert [(g.group, g.count) for g in result.groups] == [("F+old", 1), ("F+young", 1), ("M+young", 2)]


def test_numeric_and_mixed_type_sensitive_values_are_named_by_their_text() -> None:
    sensitive = pd.DataFrame({"code": pd.Series([1, "x", 2, "x", 1], dtype=object)})
    result = fairness(y_pred=pd.Series([1, 1, 0, 0, 1]), sensitive=sensitive, min_group_size=0)
    assert [(g.group, g.count) for g in result.groups] == [("1", 2), ("2", 1), ("x", 2)]


def test_without_labels_only_selection_metrics_are_computed() -> None:
    sensitive = pd.DataFrame({"g": ["a"] * 50 + ["b"] * 50})
    y_pred = pd.Series([1] * 30 + [0] * 20 + [1] * 10 + [0] * 40)
    result = fairness(y_pred=y_pred, sensitive=sensitive)
    assert not result.labelled
    assert result.metrics["demographic_parity_difference"] == pytest.approx(0.4)
    assert result.metrics["demographic_parity_ratio"] == pytest.approx(1 / 3)
    assert math.isnan(result.metrics["equalized_odds_difference"])
    assert math.isnan(result.metrics["equal_opportunity_difference"])
    assert all(math.isnan(g.true_positive_rate) and math.isnan(g.false_positive_rate) for g in result.groups)
    assert result.significant["demographic_parity_difference"] is True
    assert result.significant["equalized_odds_difference"] is False


def test_rows_missing_a_prediction_or_label_are_dropped_and_counted() -> None:
    sensitive = pd.DataFrame({"g": ["a", "a", "b", "b", "b"]})
    y_pred = pd.Series([1.0, np.nan, 0.0, 1.0, 1.0])
    y_true = pd.Series([1, 1, None, 0, 1], dtype="Int64")
    result = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive, min_group_size=0)
    assert result.dropped == 2
    assert [(g.group, g.count) for g in result.groups] == [("a", 1), ("b", 2)]


def test_fewer_than_two_judged_groups_is_insufficient_data_not_a_gap() -> None:
    sensitive = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 5})
    y_pred = pd.Series([1] * 40 + [0] * 5)
    result = fairness(y_pred=y_pred, sensitive=sensitive, min_group_size=30)
    assert result.status == "insufficient_data"
    assert result.judged_groups == 1
    assert [g.judged for g in result.groups] == [True, False]
    assert all(math.isnan(v) for v in result.metrics.values())
    assert not any(result.significant.values())


def test_empty_window_is_insufficient_data() -> None:
    result = fairness(y_pred=pd.Series([], dtype=float), sensitive=pd.DataFrame({"g": pd.Series([], dtype=str)}))
    assert result.status == "insufficient_data"
    assert result.groups == []


def test_small_groups_are_reported_but_do_not_move_the_gap() -> None:
    sensitive = pd.DataFrame({"g": ["a"] * 100 + ["b"] * 100 + ["tiny"] * 3})
    y_pred = pd.Series([1] * 50 + [0] * 50 + [1] * 40 + [0] * 60 + [1] * 3)
    result = fairness(y_pred=y_pred, sensitive=sensitive, min_group_size=30)
    assert result.metrics["demographic_parity_difference"] == pytest.approx(0.1)
    tiny = next(g for g in result.groups if g.group == "tiny")
    assert tiny.selection_rate == 1.0
    assert not tiny.judged


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.sampled_from(["F", "M", "X", None]), st.booleans(), st.booleans()),
        min_size=0,
        max_size=120,
    ),
    cut=st.integers(min_value=0, max_value=120),
)
def test_counts_of_chunks_merge_to_the_counts_of_the_whole_window(
    data: list[tuple[str | None, bool, bool]], cut: int
) -> None:
    frame = pd.DataFrame(data, columns=["g", "y", "p"]).astype({"y": int, "p": int})

    def count(part: pd.DataFrame) -> FairnessCounts:
        return FairnessCounts.from_arrays(y_pred=part["p"], y_true=part["y"], sensitive=part[["g"]])

    whole = count(frame)
    merged = count(frame.iloc[:cut]).merge(count(frame.iloc[cut:]))
    assert merged.groups == whole.groups
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert fairness_from_counts(merged, min_group_size=0).metrics.keys() == {
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
        "equal_opportunity_difference",
    }


def test_counts_pushed_down_from_sql_give_the_same_result_as_the_rows() -> None:
    rows = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "y": [1, 0, 1, 0, 1], "p": [1, 1, 0, 0, 1]})
    from_rows = fairness(y_pred=rows["p"], y_true=rows["y"], sensitive=rows[["g"]], min_group_size=0)
    # What `SELECT g, y, p, COUNT(*) ... GROUP BY g, y, p` gives, laid out as tn, fp, fn, tp.
    pushed = FairnessCounts(features=("g",), groups=("b", "a"), counts=np.array([[1, 0, 0, 1], [0, 1, 1, 1]]))
    assert pushed.groups == ("a", "b")
    from_counts = fairness_from_counts(pushed, min_group_size=0)
    assert from_counts == from_rows


def test_counts_refuse_to_merge_different_features_or_label_modes() -> None:
    a = FairnessCounts(features=("sex",), groups=("F",), counts=np.array([[1, 1, 0, 0]]))
    b = FairnessCounts(features=("age",), groups=("F",), counts=np.array([[1, 1, 0, 0]]))
    c = FairnessCounts(features=("sex",), groups=("F",), counts=np.array([[1, 1, 0, 0]]), labelled=False)
    with pytest.raises(MetricInputError):
        a.merge(b)
    with pytest.raises(MetricInputError):
        a.merge(c)
    with pytest.raises(MetricInputError):
        FairnessCounts(features=("sex",), groups=("F", "M"), counts=np.array([[1, 1, 0, 0]]))


def test_binarise_cuts_scores_at_the_threshold() -> None:
    scores = pd.Series([0.1, 0.5, 0.7, np.nan])
    assert binarise(scores, threshold=0.6).tolist() == [False, False, True, False]
    assert binarise(scores).tolist() == [False, True, True, False]


def test_binarise_treats_zero_one_floats_as_labels_and_other_floats_in_unit_range_as_scores() -> None:
    assert binarise(pd.Series([0.0, 1.0, 1.0]), pos_label=0).tolist() == [True, False, False]
    assert binarise(pd.Series([0.2, 1.0, 0.9])).tolist() == [False, True, True]


def test_binarise_compares_class_labels_including_text_round_trips() -> None:
    assert binarise(pd.Series(["yes", "no", None]), pos_label="yes").tolist() == [True, False, False]
    assert binarise(pd.Series([1, 2, 1]), pos_label="2").tolist() == [False, True, False]
    assert binarise(pd.Series(["1", "0"]), pos_label=1).tolist() == [True, False]
    assert binarise(pd.Series(["a", "b"], dtype="category"), pos_label="b").tolist() == [False, True]


def test_binarise_rejects_inputs_it_cannot_interpret() -> None:
    with pytest.raises(MetricInputError):
        binarise(pd.Series([-2.5, 3.1]))
    with pytest.raises(MetricInputError):
        binarise(pd.Series(["a", "b"]), threshold=0.5)
    with pytest.raises(MetricInputError):
        binarise(pd.Series([0, 1]), pos_label="yes")


def test_inputs_of_different_lengths_or_without_sensitive_columns_are_refused() -> None:
    with pytest.raises(MetricInputError):
        fairness(y_pred=pd.Series([1, 0]), sensitive=pd.DataFrame({"g": ["a"]}))
    with pytest.raises(MetricInputError):
        fairness(y_pred=pd.Series([1, 0]), y_true=pd.Series([1]), sensitive=pd.DataFrame({"g": ["a", "b"]}))
    with pytest.raises(MetricInputError):
        fairness(y_pred=pd.Series([1, 0]), sensitive=pd.DataFrame(index=[0, 1]))


def test_a_million_rows_take_well_under_a_second() -> None:
    rng = np.random.default_rng(3)
    n = 1_000_000
    sensitive = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "age_band": rng.choice(["young", "old"], n)})
    y_true = pd.Series(rng.integers(0, 2, n))
    y_pred = pd.Series(rng.random(n))
    fairness(y_pred=y_pred[:1000], y_true=y_true[:1000], sensitive=sensitive[:1000])
    start = time.perf_counter()
    result = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive)
    elapsed = time.perf_counter() - start
    assert sum(g.count for g in result.groups) == n
    # fairlearn's MetricFrame and gap metrics take about 30 s here; 1 s leaves room for slow runners.
    assert elapsed < 1.0


def test_intersections_with_many_possible_combinations_count_only_those_that_occur() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    # 200**3 possible combinations: far too many for a dense table, so the sorted path is taken.
    sensitive = pd.DataFrame({c: rng.integers(0, 200, n).astype(str) for c in ("a", "b", "c")})
    y_pred = pd.Series(rng.integers(0, 2, n))
    result = fairness(y_pred=y_pred, sensitive=sensitive, min_group_size=0)
    expected = y_pred.groupby(sensitive.agg("+".join, axis=1)).agg(["size", "mean"])
    assert [g.group for g in result.groups] == sorted(expected.index)
    for g in result.groups:
        assert g.count == expected.loc[g.group, "size"]
        assert g.selection_rate == pytest.approx(expected.loc[g.group, "mean"], abs=1e-12)


def test_boolean_predictions_match_a_text_pos_label() -> None:
    assert binarise(pd.Series([True, False]), pos_label="true").tolist() == [True, False]
    assert binarise(pd.Series([True, False]), pos_label=True).tolist() == [True, False]
    assert binarise(pd.Series([True, False]), pos_label=0).tolist() == [False, True]


def test_groups_without_rows_are_left_out_of_pushed_down_counts() -> None:
    counts = FairnessCounts(
        features=("g",), groups=("a", "b", "c"), counts=np.array([[5, 5, 0, 0], [0, 0, 0, 0], [2, 8, 0, 0]])
    )
    assert counts.groups == ("a", "c")
    result = fairness_from_counts(counts, min_group_size=0)
    assert result.metrics["demographic_parity_difference"] == pytest.approx(0.3)
