"""v1, v2 and Seldon inference payloads become rows; shapes that do not fit are refused with the reason."""

from __future__ import annotations

import pytest

from config.errors import InputError
from connectors.sources.inference import join, parse_feedback, parse_request, parse_response


def test_a_v2_matrix_tensor_is_split_into_named_positional_features() -> None:
    req = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    assert parse_request(req, ["a", "b", "c"]) == [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]
    assert parse_request(req) == [{"f0": 1, "f1": 2, "f2": 3}, {"f0": 4, "f1": 5, "f2": 6}]


def test_v1_named_instances_and_v2_outputs_join_row_by_row() -> None:
    rows = join("e", {"instances": [{"a": 1}, {"a": 2}]},
                {"outputs": [{"name": "o", "shape": [2], "datatype": "INT64", "data": [0, 1]}]})
    assert rows == [{"a": 1, "prediction": 0, "id": "e/0"}, {"a": 2, "prediction": 1, "id": "e/1"}]


def test_seldon_tensor_and_feedback_truth() -> None:
    req = {"data": {"names": ["a", "b"], "tensor": {"shape": [1, 2], "values": [0.5, 7]}}}
    assert parse_request(req) == [{"a": 0.5, "b": 7}]
    assert parse_response({"data": {"ndarray": [[0.1]]}}) == [0.1]
    assert parse_feedback({"truth": {"data": {"ndarray": [[1], [0]]}}}) == [1, 0]


@pytest.mark.parametrize(("call", "reason"), [
    (lambda: parse_request({"inputs": [{"shape": [2, 2], "data": [1, 2, 3]}]}), "does not fit"),
    (lambda: parse_request({"instances": [[1, 2]]}, ["only_one"]), "2 positional values"),
    (lambda: join("e", {"instances": [[1], [2]]}, {"predictions": [1]}), "2 instances but 1 predictions"),
    (lambda: parse_response(b"not json"), "not JSON"),
    (lambda: parse_feedback({"reward": 1}), "truth"),
])
def test_payloads_that_do_not_fit_are_refused_with_the_reason(call: object, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        call()  # type: ignore[operator]
